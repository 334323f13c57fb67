import assert from "node:assert/strict";
import {
  formatPrefix,
  parseAddress,
  parsePrefix,
  prefixContains,
} from "./prefix.ts";

/** Parses `text` as an address and fails the test when it is rejected. */
function address(text: string): Uint8Array {
  const bytes = parseAddress(text);
  if (bytes === undefined) assert.fail(`parseAddress("${text}") failed`);
  return bytes;
}

/** 16 bytes of an IPv6 address, given as its 8 groups. */
function ipv6(...groups: number[]): Uint8Array {
  const bytes = new Uint8Array(16);
  for (const [i, group] of groups.entries()) {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  }
  return bytes;
}

// parseAddress

Deno.test("parseAddress() reads a dotted quad", async (t) => {
  const rows: [string, number[]][] = [
    ["127.0.0.1", [127, 0, 0, 1]],
    ["0.0.0.0", [0, 0, 0, 0]],
    ["255.255.255.255", [255, 255, 255, 255]],
    ["192.0.2.10", [192, 0, 2, 10]],
  ];
  for (const [text, bytes] of rows) {
    await t.step(text, () => {
      assert.deepEqual(parseAddress(text), new Uint8Array(bytes));
    });
  }
});

Deno.test("parseAddress() rejects an invalid IPv4 address", async (t) => {
  const rows = [
    "",
    "1.2.3",
    "1.2.3.4.5",
    "256.0.0.1",
    "1.2.3.-4",
    "01.2.3.4",
    "1.2.3.04",
    "a.b.c.d",
    "1.2.3.4 ",
    " 1.2.3.4",
    "1..3.4",
    "1.2.3.4.",
    "0x7f.0.0.1",
    "localhost",
  ];
  for (const text of rows) {
    await t.step(JSON.stringify(text), () => {
      assert.equal(parseAddress(text), undefined);
    });
  }
});

Deno.test("parseAddress() reads IPv6 forms", async (t) => {
  const rows: [string, Uint8Array][] = [
    ["::", ipv6()],
    ["::1", ipv6(0, 0, 0, 0, 0, 0, 0, 1)],
    ["1::", ipv6(1)],
    ["2001:db8::7", ipv6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)],
    ["2001:DB8::A", ipv6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa)],
    ["1:2:3:4:5:6:7:8", ipv6(1, 2, 3, 4, 5, 6, 7, 8)],
    ["1:2:3:4:5:6:7::", ipv6(1, 2, 3, 4, 5, 6, 7, 0)],
    ["::2:3:4:5:6:7:8", ipv6(0, 2, 3, 4, 5, 6, 7, 8)],
    ["fe80:0000::0001", ipv6(0xfe80, 0, 0, 0, 0, 0, 0, 1)],
    ["::ffff:192.0.2.1", ipv6(0, 0, 0, 0, 0, 0xffff, 0xc000, 0x0201)],
    ["1:2:3:4:5:6:1.2.3.4", ipv6(1, 2, 3, 4, 5, 6, 0x0102, 0x0304)],
  ];
  for (const [text, bytes] of rows) {
    await t.step(text, () => {
      assert.deepEqual(parseAddress(text), bytes);
    });
  }
});

Deno.test("parseAddress() rejects an invalid IPv6 address", async (t) => {
  const rows = [
    ":",
    ":::",
    "1::2::3",
    "1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:8:9",
    "::1:2:3:4:5:6:7:8",
    "1:2:3:4::5:6:7:8",
    ":1:2:3:4:5:6:7",
    "1:2:3:4:5:6:7:",
    "12345::",
    "::g",
    "[::1]",
    "fe80::1%eth0",
    "::256.0.0.1",
    "::1.2.3",
    "1:2:3:4:5:6:7:1.2.3.4",
    "::1.2.3.4:5",
  ];
  for (const text of rows) {
    await t.step(text, () => {
      assert.equal(parseAddress(text), undefined);
    });
  }
});

Deno.test("parseAddress() rejects IPv4 before the end of IPv6", async (t) => {
  // A dotted quad may only fill the last 32 bits of an IPv6 address.
  for (const text of ["1.2.3.4::", "1.2.3.4::5"]) {
    await t.step(text, () => {
      assert.equal(parseAddress(text), undefined);
    });
  }
});

// parsePrefix

Deno.test("parsePrefix() reads an IPv4 prefix", () => {
  const prefix = parsePrefix("10.0.0.0/8");

  assert.equal(prefix.family, 4);
  assert.equal(prefix.length, 8);
  assert.deepEqual(prefix.address, new Uint8Array([10, 0, 0, 0]));
});

Deno.test("parsePrefix() reads an IPv6 prefix", () => {
  const prefix = parsePrefix("2001:db8::/32");

  assert.equal(prefix.family, 6);
  assert.equal(prefix.length, 32);
  assert.deepEqual(prefix.address, ipv6(0x2001, 0xdb8));
});

Deno.test("parsePrefix() accepts lengths 0 and the maximum", async (t) => {
  const rows: [string, 4 | 6, number][] = [
    ["0.0.0.0/0", 4, 0],
    ["192.0.2.1/32", 4, 32],
    ["::/0", 6, 0],
    ["::1/128", 6, 128],
  ];
  for (const [text, family, length] of rows) {
    await t.step(text, () => {
      const prefix = parsePrefix(text);
      assert.equal(prefix.family, family);
      assert.equal(prefix.length, length);
    });
  }
});

Deno.test("parsePrefix() rejects text without a length", () => {
  assert.throws(() => parsePrefix("10.0.0.0"), {
    name: "SyntaxError",
    message:
      '"10.0.0.0" is not a prefix: expected an address and a length, such as "127.0.0.0/8"',
  });
});

Deno.test("parsePrefix() rejects an invalid address", async (t) => {
  const rows: [string, string][] = [
    ["localhost/8", "localhost"],
    ["10.0.0/8", "10.0.0"],
    ["/8", ""],
    ["1::2::3/64", "1::2::3"],
  ];
  for (const [text, addressText] of rows) {
    await t.step(text, () => {
      assert.throws(() => parsePrefix(text), {
        name: "SyntaxError",
        message:
          `"${text}" is not a prefix: "${addressText}" is not an IPv4 or IPv6 address`,
      });
    });
  }
});

Deno.test("parsePrefix() rejects an invalid length", async (t) => {
  const rows: [string, number][] = [
    ["10.0.0.0/33", 32],
    ["10.0.0.0/", 32],
    ["10.0.0.0/-1", 32],
    ["10.0.0.0/8a", 32],
    ["10.0.0.0/ 8", 32],
    ["10.0.0.0/1000", 32],
    ["10.0.0.0/8/8", 32],
    ["::/129", 128],
    ["::/", 128],
    ["1.2.3.4/032", 32],
    ["::/00", 128],
  ];
  for (const [text, maxLength] of rows) {
    await t.step(text, () => {
      assert.throws(() => parsePrefix(text), {
        name: "SyntaxError",
        message:
          `"${text}" is not a prefix: the length must be 0-${maxLength}, without leading zeros`,
      });
    });
  }
});

Deno.test("parsePrefix() rejects host bits past the length", async (t) => {
  const rows: [string, number][] = [
    ["10.0.0.1/8", 8],
    ["192.0.2.128/24", 24],
    ["172.16.0.0/11", 11],
    ["0.0.0.1/0", 0],
    ["2001:db8::1/32", 32],
    ["fe80::/8", 8],
  ];
  for (const [text, length] of rows) {
    await t.step(text, () => {
      assert.throws(() => parsePrefix(text), {
        name: "SyntaxError",
        message:
          `"${text}" is not a prefix: address bits are set past /${length}`,
      });
    });
  }
});

// formatPrefix

Deno.test("formatPrefix() writes what parsePrefix() reads", async (t) => {
  const rows = [
    "10.0.0.0/8",
    "0.0.0.0/0",
    "192.0.2.1/32",
    "::/0",
    "::1/128",
    "1::/16",
    "2001:db8::/32",
    "fe80::/10",
    "2001:db8:0:1::/64",
    "1:2:3:4:5:6:7:8/128",
  ];
  for (const text of rows) {
    await t.step(text, () => {
      assert.equal(formatPrefix(parsePrefix(text)), text);
    });
  }
});

Deno.test("formatPrefix() writes the RFC 5952 IPv6 form", async (t) => {
  const rows: [string, string][] = [
    ["2001:DB8::/32", "2001:db8::/32"],
    ["2001:0db8:0000:0000:0000:0000:0000:0000/32", "2001:db8::/32"],
    // The longest run of zero groups is the one shortened.
    ["2001:0:0:1:0:0:0:1/128", "2001:0:0:1::1/128"],
    // Of two runs of equal length, the first is shortened.
    ["2001:0:0:1:0:0:1:1/128", "2001::1:0:0:1:1/128"],
    // A single zero group stays as 0.
    ["2001:db8:0:1:1:1:1:1/128", "2001:db8:0:1:1:1:1:1/128"],
    ["1:2:3:4:5:6:7::/128", "1:2:3:4:5:6:7:0/128"],
    // IPv4-mapped addresses keep the dotted form that RFC 5952 recommends.
    ["::ffff:0.0.0.0/96", "::ffff:0.0.0.0/96"],
    ["::ffff:7f00:1/128", "::ffff:127.0.0.1/128"],
  ];
  for (const [text, formatted] of rows) {
    await t.step(text, () => {
      assert.equal(formatPrefix(parsePrefix(text)), formatted);
    });
  }
});

// prefixContains

Deno.test("prefixContains() matches IPv4 addresses in the prefix", () => {
  const loopback = parsePrefix("127.0.0.0/8");

  assert.equal(prefixContains(loopback, address("127.0.0.1")), true);
  assert.equal(prefixContains(loopback, address("127.255.255.255")), true);
  assert.equal(prefixContains(loopback, address("128.0.0.1")), false);
  assert.equal(prefixContains(loopback, address("126.255.255.255")), false);
});

Deno.test("prefixContains() compares bits inside a byte", () => {
  const prefix = parsePrefix("172.16.0.0/12");

  assert.equal(prefixContains(prefix, address("172.16.0.0")), true);
  assert.equal(prefixContains(prefix, address("172.31.255.255")), true);
  assert.equal(prefixContains(prefix, address("172.32.0.0")), false);
  assert.equal(prefixContains(prefix, address("172.15.255.255")), false);
});

Deno.test("prefixContains() matches one address at /32", () => {
  const prefix = parsePrefix("192.0.2.7/32");

  assert.equal(prefixContains(prefix, address("192.0.2.7")), true);
  assert.equal(prefixContains(prefix, address("192.0.2.6")), false);
  assert.equal(prefixContains(prefix, address("192.0.2.8")), false);
});

Deno.test("prefixContains() matches every address of a family at /0", () => {
  const v4 = parsePrefix("0.0.0.0/0");
  const v6 = parsePrefix("::/0");

  assert.equal(prefixContains(v4, address("203.0.113.9")), true);
  assert.equal(prefixContains(v4, address("255.255.255.255")), true);
  assert.equal(prefixContains(v6, address("2001:db8::1")), true);
  assert.equal(prefixContains(v6, address("ffff::")), true);
});

Deno.test("prefixContains() matches IPv6 addresses in the prefix", () => {
  const linkLocal = parsePrefix("fe80::/10");
  const loopback = parsePrefix("::1/128");

  assert.equal(prefixContains(linkLocal, address("fe80::1")), true);
  assert.equal(prefixContains(linkLocal, address("febf:ffff::1")), true);
  assert.equal(prefixContains(linkLocal, address("fec0::1")), false);
  assert.equal(prefixContains(linkLocal, address("fe7f::1")), false);
  assert.equal(prefixContains(loopback, address("::1")), true);
  assert.equal(prefixContains(loopback, address("::2")), false);
  assert.equal(prefixContains(loopback, address("::")), false);
});

Deno.test("prefixContains() rejects an address of the other family", () => {
  assert.equal(
    prefixContains(parsePrefix("0.0.0.0/0"), address("::1")),
    false,
  );
  assert.equal(
    prefixContains(parsePrefix("::/0"), address("127.0.0.1")),
    false,
  );
  assert.equal(
    prefixContains(parsePrefix("::/0"), new Uint8Array(5)),
    false,
  );
});
