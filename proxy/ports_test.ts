import assert from "node:assert/strict";
import type { PortRange } from "./frontend.ts";
import {
  countPorts,
  formatRange,
  isPort,
  mergeRanges,
  parsePortSpec,
} from "./ports.ts";

Deno.test("parsePortSpec() reads an integer as one port", async (t) => {
  for (const port of [1, 80, 6001, 65535]) {
    await t.step(String(port), () => {
      assert.deepEqual(parsePortSpec(port), { first: port, last: port });
    });
  }
});

Deno.test("parsePortSpec() reads a range string", async (t) => {
  const rows: [string, PortRange][] = [
    ["6001-6400", { first: 6001, last: 6400 }],
    ["1-65535", { first: 1, last: 65535 }],
    ["80-80", { first: 80, last: 80 }],
  ];
  for (const [text, range] of rows) {
    await t.step(text, () => {
      assert.deepEqual(parsePortSpec(text), range);
    });
  }
});

Deno.test("parsePortSpec() rejects a number outside 1-65535", async (t) => {
  for (const value of [0, -1, 65536, 70000, 1.5, NaN, Infinity]) {
    await t.step(String(value), () => {
      assert.equal(
        parsePortSpec(value),
        `${JSON.stringify(value)} is not a port (1-65535)`,
      );
    });
  }
});

Deno.test("parsePortSpec() rejects a value of the wrong type", async (t) => {
  for (const value of [null, undefined, true, [80], { first: 80 }]) {
    await t.step(String(JSON.stringify(value)), () => {
      const result = parsePortSpec(value);
      assert.equal(typeof result, "string");
      assert.match(
        result as string,
        /is not a port: use an integer 1-65535 or a range "first-last"$/,
      );
    });
  }
});

Deno.test("parsePortSpec() rejects a port as a string", async (t) => {
  const rows: [string, string][] = [
    ["80", "80"],
    ["080", "80"],
    ["65535", "65535"],
  ];
  for (const [text, port] of rows) {
    await t.step(text, () => {
      assert.equal(
        parsePortSpec(text),
        `"${text}" is a string: write one port as the number ${port}, without quotes, or a range as "first-last"`,
      );
    });
  }
  for (const text of ["0", "65536", "123456"]) {
    await t.step(text, () => {
      assert.equal(
        parsePortSpec(text),
        `"${text}" is not a port: use an integer 1-65535, without quotes`,
      );
    });
  }
});

Deno.test("parsePortSpec() rejects a malformed range", async (t) => {
  const rows = [
    "a-b",
    "",
    "-80",
    "80-",
    " 80-90",
    "80 - 90",
    "1-2-3",
    "1-700000",
    "0x50-0x60",
    "1.5-2",
  ];
  for (const text of rows) {
    await t.step(JSON.stringify(text), () => {
      assert.equal(
        parsePortSpec(text),
        `"${text}" is not a port range: use "first-last", such as "20000-29999", or an integer for one port`,
      );
    });
  }
});

Deno.test("parsePortSpec() rejects range ends outside 1-65535", async (t) => {
  for (const text of ["1-70000", "0-10", "0-0", "65535-65536", "99999-99999"]) {
    await t.step(text, () => {
      assert.equal(
        parsePortSpec(text),
        `"${text}" is not a port range: both ends must be ports (1-65535)`,
      );
    });
  }
});

Deno.test("parsePortSpec() rejects range ends with a leading zero", async (t) => {
  const rows: [string, string][] = [["080-90", "80-90"], ["80-090", "80-90"]];
  for (const [text, fix] of rows) {
    await t.step(text, () => {
      assert.equal(
        parsePortSpec(text),
        `"${text}" is not a port range: an end has a leading zero, write "${fix}"`,
      );
    });
  }
});

Deno.test("parsePortSpec() rejects a range that runs backwards", () => {
  assert.equal(
    parsePortSpec("10-5"),
    '"10-5" is not a port range: 10 is greater than 5',
  );
});

Deno.test("isPort() accepts only integers 1-65535", () => {
  assert.equal(isPort(1), true);
  assert.equal(isPort(65535), true);
  assert.equal(isPort(0), false);
  assert.equal(isPort(65536), false);
  assert.equal(isPort(80.5), false);
  assert.equal(isPort(NaN), false);
});

Deno.test("formatRange() writes one port without a dash", () => {
  assert.equal(formatRange({ first: 6001, last: 6001 }), "6001");
});

Deno.test("formatRange() writes a range as first-last", () => {
  assert.equal(formatRange({ first: 6001, last: 6400 }), "6001-6400");
});

Deno.test("formatRange() output parses back to the range", async (t) => {
  const rows: PortRange[] = [
    { first: 1, last: 65535 },
    { first: 443, last: 443 },
    { first: 20000, last: 29999 },
  ];
  for (const range of rows) {
    const text = formatRange(range);
    await t.step(text, () => {
      const value = range.first === range.last ? Number(text) : text;
      assert.deepEqual(parsePortSpec(value), range);
    });
  }
});

Deno.test("mergeRanges() returns [] for no ranges", () => {
  assert.deepEqual(mergeRanges([]), []);
});

Deno.test("mergeRanges() sorts ranges by first port", () => {
  assert.deepEqual(
    mergeRanges([
      { first: 300, last: 300 },
      { first: 100, last: 110 },
      { first: 200, last: 210 },
    ]),
    [
      { first: 100, last: 110 },
      { first: 200, last: 210 },
      { first: 300, last: 300 },
    ],
  );
});

Deno.test("mergeRanges() merges ranges that touch", () => {
  assert.deepEqual(
    mergeRanges([
      { first: 6001, last: 6100 },
      { first: 6101, last: 6101 },
      { first: 6102, last: 6200 },
    ]),
    [{ first: 6001, last: 6200 }],
  );
});

Deno.test("mergeRanges() merges ranges that overlap", () => {
  assert.deepEqual(
    mergeRanges([
      { first: 6050, last: 6200 },
      { first: 6000, last: 6100 },
    ]),
    [{ first: 6000, last: 6200 }],
  );
});

Deno.test("mergeRanges() keeps a range inside another once", () => {
  assert.deepEqual(
    mergeRanges([
      { first: 1000, last: 2000 },
      { first: 1500, last: 1600 },
      { first: 1999, last: 2001 },
    ]),
    [{ first: 1000, last: 2001 }],
  );
});

Deno.test("mergeRanges() keeps ranges apart across a gap", () => {
  assert.deepEqual(
    mergeRanges([
      { first: 1, last: 5 },
      { first: 7, last: 10 },
    ]),
    [
      { first: 1, last: 5 },
      { first: 7, last: 10 },
    ],
  );
});

Deno.test("mergeRanges() merges duplicate ranges", () => {
  assert.deepEqual(
    mergeRanges([
      { first: 80, last: 80 },
      { first: 80, last: 80 },
    ]),
    [{ first: 80, last: 80 }],
  );
});

Deno.test("mergeRanges() leaves its input unchanged", () => {
  const input: PortRange[] = [
    { first: 20, last: 30 },
    { first: 10, last: 20 },
  ];

  const merged = mergeRanges(input);

  assert.deepEqual(merged, [{ first: 10, last: 30 }]);
  assert.deepEqual(input, [
    { first: 20, last: 30 },
    { first: 10, last: 20 },
  ]);
  assert.notEqual(merged[0], input[1]);
});

Deno.test("mergeRanges() accepts any iterable", () => {
  function* ranges(): Generator<PortRange> {
    yield { first: 5, last: 6 };
    yield { first: 1, last: 4 };
  }

  assert.deepEqual(mergeRanges(ranges()), [{ first: 1, last: 6 }]);
  assert.deepEqual(mergeRanges(new Set([{ first: 9, last: 9 }])), [
    { first: 9, last: 9 },
  ]);
});

Deno.test("countPorts() returns 0 for no ranges", () => {
  assert.equal(countPorts([]), 0);
});

Deno.test("countPorts() counts both ends of each range", () => {
  assert.equal(countPorts([{ first: 80, last: 80 }]), 1);
  assert.equal(countPorts([{ first: 6001, last: 6400 }]), 400);
  assert.equal(countPorts([{ first: 1, last: 65535 }]), 65535);
});

Deno.test("countPorts() adds up several ranges", () => {
  assert.equal(
    countPorts([
      { first: 5001, last: 5400 },
      { first: 6001, last: 6400 },
      { first: 7000, last: 7000 },
    ]),
    801,
  );
});
