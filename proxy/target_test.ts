import assert from "node:assert/strict";
import { parseTarget, type TargetAddress } from "./target.ts";

/** Parses `text` and fails the test when it is rejected. */
function parseValid(text: string): TargetAddress {
  const result = parseTarget(text);
  if (typeof result === "string") assert.fail(result);
  return result;
}

Deno.test("parseTarget() reads host names and IPv4 addresses", async (t) => {
  const rows: [string, string, number][] = [
    ["host:6001", "host", 6001],
    ["app.internal:6001", "app.internal", 6001],
    ["localhost:1", "localhost", 1],
    ["127.0.0.1:65535", "127.0.0.1", 65535],
    [
      "my-service.ns.svc.cluster.local:80",
      "my-service.ns.svc.cluster.local",
      80,
    ],
    ["_srv.example.com:443", "_srv.example.com", 443],
    ["example.com.:443", "example.com.", 443],
  ];
  for (const [text, hostname, port] of rows) {
    await t.step(text, () => {
      const literal = /^[\d.]+$/.test(hostname);
      assert.deepEqual(parseValid(text), {
        hostname,
        port,
        literal,
        label: text,
      });
    });
  }
});

Deno.test("parseTarget() reads IPv6 addresses in brackets", async (t) => {
  const rows: [string, string, number][] = [
    ["[::1]:9001", "::1", 9001],
    ["[2001:db8::7]:443", "2001:db8::7", 443],
    ["[::ffff:192.0.2.1]:80", "::ffff:192.0.2.1", 80],
    ["[::]:1", "::", 1],
  ];
  for (const [text, hostname, port] of rows) {
    await t.step(text, () => {
      assert.deepEqual(parseValid(text), {
        hostname,
        port,
        literal: true,
        label: text,
      });
    });
  }
});

Deno.test("parseTarget() rejects a value that is not a string", async (t) => {
  for (const value of [80, null, undefined, { host: "h", port: 1 }]) {
    await t.step(String(JSON.stringify(value)), () => {
      assert.equal(
        parseTarget(value),
        `${JSON.stringify(value)} is not a target: use a "host:port" string`,
      );
    });
  }
});

Deno.test("parseTarget() rejects a target without a port", () => {
  assert.equal(
    parseTarget("host"),
    '"host" is not a target: the port is missing, use "host:port"',
  );
  assert.equal(
    parseTarget("host:"),
    '"host:" is not a target: "" is not a port (1-65535)',
  );
});

Deno.test("parseTarget() rejects a target without a host", () => {
  assert.equal(
    parseTarget(":80"),
    '":80" is not a target: "" is not a host name or IPv4 address',
  );
});

Deno.test("parseTarget() rejects a port that is not digits", async (t) => {
  for (const port of ["abc", "-1", "+80", "8 0", "80 ", "123456", "0x50"]) {
    await t.step(port, () => {
      assert.equal(
        parseTarget(`host:${port}`),
        `"host:${port}" is not a target: "${port}" is not a port (1-65535)`,
      );
    });
  }
});

Deno.test("parseTarget() rejects a port with a leading zero", async (t) => {
  for (const [port, fix] of [["080", 80], ["00443", 443]]) {
    await t.step(String(port), () => {
      assert.equal(
        parseTarget(`host:${port}`),
        `"host:${port}" is not a target: "${port}" has a leading zero, write the port as ${fix}`,
      );
    });
  }
});

Deno.test("parseTarget() rejects a port outside 1-65535", async (t) => {
  for (const port of [0, 65536, 99999]) {
    await t.step(String(port), () => {
      assert.equal(
        parseTarget(`host:${port}`),
        `"host:${port}" is not a target: port ${port} is out of range (1-65535)`,
      );
    });
  }
});

Deno.test("parseTarget() rejects IPv6 without brackets", async (t) => {
  for (const text of ["::1:9001", "2001:db8::1:443", "::1"]) {
    await t.step(text, () => {
      assert.equal(
        parseTarget(text),
        `"${text}" is not a target: write IPv6 addresses in brackets, such as "[::1]:9001"`,
      );
    });
  }
});

Deno.test("parseTarget() rejects brackets without IPv6", async (t) => {
  const rows: [string, string][] = [
    ["[zz]:1", "zz"],
    ["[127.0.0.1]:80", "127.0.0.1"],
    ["[host]:80", "host"],
    ["[]:80", ""],
    ["[1::2::3]:80", "1::2::3"],
  ];
  for (const [text, host] of rows) {
    await t.step(text, () => {
      assert.equal(
        parseTarget(text),
        `"${text}" is not a target: "${host}" in brackets is not an IPv6 address`,
      );
    });
  }
});

Deno.test("parseTarget() names what is wrong around brackets", async (t) => {
  const rows: [string, string][] = [
    ["[::1]", 'the port after "]" is missing, use "[address]:port"'],
    ["[2001:db8::7]", 'the port after "]" is missing, use "[address]:port"'],
    ["[::1]9001", 'the port after "]" is missing, use "[address]:port"'],
    [
      "[2001:db8::7:9001",
      'the "]" after the IPv6 address is missing, use "[address]:port"',
    ],
    [
      "[fe80::1%eth0]:9001",
      'zone IDs such as "%eth0" are not supported, use a global or unique local IPv6 address',
    ],
  ];
  for (const [text, reason] of rows) {
    await t.step(text, () => {
      assert.equal(parseTarget(text), `"${text}" is not a target: ${reason}`);
    });
  }
});

Deno.test("parseTarget() rejects an invalid host name", async (t) => {
  const long = `${"a".repeat(63)}.`.repeat(4) + "com";
  const rows = [
    "bad host",
    "-h",
    "a..b",
    ".host",
    "h/x",
    "h@x",
    "é.example",
    "a".repeat(64),
    long,
  ];
  for (const host of rows) {
    await t.step(host.length > 20 ? `${host.length} characters` : host, () => {
      assert.equal(
        parseTarget(`${host}:80`),
        `"${host}:80" is not a target: "${host}" is not a host name or IPv4 address`,
      );
    });
  }
});

Deno.test("parseTarget() accepts labels of 63 characters", () => {
  const host = `${"a".repeat(63)}.example`;

  assert.equal(parseValid(`${host}:80`).hostname, host);
});

Deno.test("parseTarget() rejects a numeric host that is not IPv4", async (t) => {
  const hosts = [
    "256.0.0.1",
    "1.2.3",
    "1.2.3.4.5",
    "01.2.3.4",
    "80",
    "0x7f000001",
    "0X7F.1",
    "0x7f.0.0.1",
  ];
  for (const host of hosts) {
    await t.step(host, () => {
      assert.equal(
        parseTarget(`${host}:80`),
        `"${host}:80" is not a target: "${host}" is not an IPv4 address`,
      );
    });
  }
});

Deno.test("parseTarget() escapes control characters in its message", () => {
  const message = parseTarget("ho\u001bst:80");
  assert.equal(typeof message, "string");
  assert.ok(!(message as string).includes("\u001b"), message as string);
  assert.match(message as string, /"ho\\u001bst:80" is not a target/);
});
