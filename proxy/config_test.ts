import assert from "node:assert/strict";
import { parseConfig, readConfigText } from "./config.ts";
import {
  ConfigError,
  type ConfigProblem,
  formatProblem,
} from "./config_error.ts";
import { formatPrefix } from "./prefix.ts";
import { DEFAULT_SETTINGS, type FrontendMode } from "./settings.ts";

const VALID_APP = { Name: "web", Ports: [8080], Targets: ["127.0.0.1:9000"] };

/** Config text with one valid app and `fields` added at the top level. */
function withSettings(fields: Record<string, unknown>): string {
  return JSON.stringify({ Apps: [VALID_APP], ...fields });
}

/** Config text with `apps` as the `Apps` list. */
function withApps(...apps: unknown[]): string {
  return JSON.stringify({ Apps: apps });
}

/** Config text with one app that differs from a valid app in `fields`. */
function withApp(fields: Record<string, unknown>): string {
  return withApps({ ...VALID_APP, ...fields });
}

/** Returns the problems of a config that `parseConfig()` must reject. */
function problemsOf(
  text: string,
  mode?: FrontendMode,
): readonly ConfigProblem[] {
  try {
    parseConfig(text, "config", mode);
  } catch (error) {
    if (error instanceof ConfigError) return error.problems;
    throw error;
  }
  assert.fail(`parseConfig() accepted ${text}, expected a ConfigError`);
}

/** Asserts that `text` has exactly one problem, at `path`, with `message`. */
function assertOneProblem(
  text: string,
  path: string,
  message: string | RegExp,
): void {
  const problems = problemsOf(text);
  assert.equal(problems.length, 1, JSON.stringify(problems));
  assert.equal(problems[0]!.path, path);
  if (typeof message === "string") {
    assert.equal(problems[0]!.message, message);
  } else {
    assert.match(problems[0]!.message, message);
  }
}

// Format and syntax

Deno.test("parseConfig() loads the original format unchanged", () => {
  const config = parseConfig(
    '{"Apps":[{"Name":"six-thousand","Ports":[6001,6200],"Targets":["host:6001","host:6002"]}]}',
  );

  assert.equal(config.apps.length, 1);
  const app = config.apps[0]!;
  assert.equal(app.name, "six-thousand");
  assert.deepEqual(app.ports, [
    { first: 6001, last: 6001 },
    { first: 6200, last: 6200 },
  ]);
  assert.deepEqual(app.targets, [
    { hostname: "host", port: 6001, literal: false, label: "host:6001" },
    { hostname: "host", port: 6002, literal: false, label: "host:6002" },
  ]);
  assert.deepEqual(config.settings, DEFAULT_SETTINGS);
});

Deno.test("parseConfig() keeps port entries as written", () => {
  const config = parseConfig(withApp({ Ports: ["6000-6100", 6101, 7000] }));

  assert.deepEqual(config.apps[0]!.ports, [
    { first: 6000, last: 6100 },
    { first: 6101, last: 6101 },
    { first: 7000, last: 7000 },
  ]);
});

Deno.test("parseConfig() keeps apps in file order", () => {
  const config = parseConfig(withApps(
    { Name: "b", Ports: [2], Targets: ["h:2"] },
    { Name: "a", Ports: [1], Targets: ["h:1"] },
    { Name: "c", Ports: [3], Targets: ["h:3"] },
  ));

  assert.deepEqual(config.apps.map((app) => app.name), ["b", "a", "c"]);
});

Deno.test("parseConfig() accepts comments and trailing commas", () => {
  const config = parseConfig(`
    // Line comment before the root.
    {
      /* Block comment. */
      "Apps": [
        {
          "Name": "web", // after a value
          "Ports": [8080, "9000-9001",],
          "Targets": ["127.0.0.1:19000",],
        },
      ],
      "Balance": "round-robin",
    }
  `);

  assert.equal(config.apps.length, 1);
  assert.equal(config.apps[0]!.name, "web");
  assert.deepEqual(config.apps[0]!.ports, [
    { first: 8080, last: 8080 },
    { first: 9000, last: 9001 },
  ]);
  assert.equal(config.apps[0]!.targets.length, 1);
  assert.equal(config.settings.balance, "round-robin");
});

Deno.test("parseConfig() reports line and column of a syntax error", () => {
  const problems = problemsOf('{\n  "Apps": [,\n}');

  assert.ok(problems.length >= 1);
  assert.equal(problems[0]!.path, "");
  assert.match(problems[0]!.message, /^invalid JSON at line 2, column 12: /);
});

Deno.test("parseConfig() counts columns after CRLF line ends", () => {
  const problems = problemsOf('{"Apps": [1]\r\n, x}');

  assert.equal(problems.length, 1);
  assert.equal(
    problems[0]!.message,
    'invalid JSON at line 2, column 3: unexpected "x"',
  );
});

Deno.test("parseConfig() reports a missing colon with its position", () => {
  const problems = problemsOf('{\n  "Apps" []\n}');

  assert.ok(problems.length >= 1);
  assert.match(
    problems[0]!.message,
    /^invalid JSON at line 2, column 10: a ":" is expected$/,
  );
});

Deno.test("parseConfig() skips a UTF-8 byte order mark", () => {
  const config = parseConfig("\uFEFF" + withApps(VALID_APP));

  assert.equal(config.apps.length, 1);
});

Deno.test("parseConfig() rejects empty text", () => {
  const problems = problemsOf("");

  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.path, "");
  assert.match(problems[0]!.message, /^the file is empty: /);
});

Deno.test("parseConfig() rejects a target that loops back into the proxy", () => {
  const problems = problemsOf(JSON.stringify({
    Apps: [{ Name: "web", Ports: [8900], Targets: ["127.0.0.1:8900"] }],
  }));

  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.path, "Apps[0].Targets[0]");
  assert.match(problems[0]!.message, /loop back into the proxy/);
});

Deno.test("parseConfig() accepts a chain of apps that ends at a server", () => {
  const config = parseConfig(JSON.stringify({
    Apps: [
      { Name: "old", Ports: [8800], Targets: ["127.0.0.1:8900"] },
      { Name: "web", Ports: [8900], Targets: ["192.0.2.1:80"] },
    ],
  }));

  assert.equal(config.apps[0]!.targets[0]!.port, 8900);
});

Deno.test("parseConfig() rejects a loop through several apps", () => {
  const problems = problemsOf(JSON.stringify({
    Apps: [
      { Name: "a", Ports: [8800], Targets: ["127.0.0.1:8900"] },
      { Name: "b", Ports: [8900], Targets: ["localhost:9000"] },
      { Name: "c", Ports: [9000], Targets: ["127.0.0.1:8800", "192.0.2.1:80"] },
    ],
  }));

  assert.deepEqual(problems.map((p) => p.path), [
    "Apps[0].Targets[0]",
    "Apps[1].Targets[0]",
    "Apps[2].Targets[0]",
  ]);
  assert.equal(
    problems[0]!.message,
    '"127.0.0.1:8900" is port 8900 of this proxy (app "b", whose targets lead back to app "a" through app "c"): connections would loop back into the proxy; point it at the server instead',
  );
});

Deno.test("parseConfig() names a looping target after an invalid one", () => {
  const problems = problemsOf(JSON.stringify({
    Apps: [{
      Name: "web",
      Ports: [8900],
      Targets: ["nohostport", "127.0.0.1:8900"],
    }],
  }));

  assert.equal(problems.length, 2);
  assert.equal(problems[0]!.path, "Apps[0].Targets[0]");
  assert.equal(problems[1]!.path, "Apps[0].Targets[1]");
  assert.match(problems[1]!.message, /loop back into the proxy/);
});

Deno.test("parseConfig() rejects every spelling of a looping target", async (t) => {
  const targets = [
    "127.0.0.5:8900",
    "localhost:8900",
    "LocalHost:8900",
    "localhost.:8900",
    "app.localhost:8900",
    "[::1]:8900",
    "[::ffff:127.0.0.1]:8900",
    "0.0.0.0:8900",
    "[::]:8900",
  ];
  for (const target of targets) {
    await t.step(target, () => {
      const problems = problemsOf(JSON.stringify({
        Apps: [{ Name: "web", Ports: ["8800-8999"], Targets: [target] }],
      }));
      assert.equal(problems.length, 1);
      assert.match(problems[0]!.message, /loop back into the proxy/);
    });
  }
});

Deno.test("parseConfig() accepts a loopback target when listening elsewhere", () => {
  const config = parseConfig(JSON.stringify({
    ListenAddress: "192.0.2.10",
    Apps: [{ Name: "web", Ports: [8900], Targets: ["127.0.0.1:8900"] }],
  }));

  assert.equal(config.apps[0]!.targets[0]!.port, 8900);
});

Deno.test("parseConfig() accepts a loopback target outside the steered prefixes", () => {
  const config = parseConfig(JSON.stringify({
    Mode: "bpf",
    SteerPrefixes: ["10.0.0.0/8"],
    Apps: [{ Name: "web", Ports: [8900], Targets: ["127.0.0.1:8900"] }],
  }));

  assert.equal(config.apps[0]!.targets[0]!.port, 8900);
});

Deno.test("parseConfig() checks loops in the mode that --mode sets", () => {
  const text = JSON.stringify({
    ListenAddress: "192.0.2.10",
    Apps: [{ Name: "web", Ports: [8900], Targets: ["127.0.0.1:8900"] }],
  });
  const problems = problemsOf(text, "bpf");

  assert.equal(problems.length, 1);
  assert.match(problems[0]!.message, /loop back into the proxy/);
});

Deno.test("parseConfig() rejects a root that is not an object", async (t) => {
  for (const text of ["[]", '"Apps"', "null", "42", "true"]) {
    await t.step(text, () => {
      assertOneProblem(text, "", /root must be an object/);
    });
  }
});

Deno.test("parseConfig() rejects missing Apps", () => {
  assertOneProblem("{}", "Apps", /^is missing: add a list such as /);
});

Deno.test("parseConfig() rejects an empty Apps list", () => {
  assertOneProblem(
    '{"Apps": []}',
    "Apps",
    "is empty: list at least one app",
  );
});

Deno.test("parseConfig() rejects Apps that is not a list", () => {
  assertOneProblem(
    '{"Apps": {"Name": "web"}}',
    "Apps",
    '{"Name":"web"} is not a list: put the apps in [ ]',
  );
});

Deno.test("parseConfig() rejects a null app", () => {
  assertOneProblem(
    withApps(null, VALID_APP),
    "Apps[0]",
    "null is not an app object",
  );
});

Deno.test("parseConfig() rejects an app that is not an object", () => {
  assertOneProblem(
    withApps(VALID_APP, "web"),
    "Apps[1]",
    '"web" is not an app object',
  );
});

// Ports

Deno.test("parseConfig() accepts ports at both ends of the range", () => {
  const config = parseConfig(withApp({ Ports: [1, 65535, "2-3"] }));

  assert.deepEqual(config.apps[0]!.ports, [
    { first: 1, last: 1 },
    { first: 65535, last: 65535 },
    { first: 2, last: 3 },
  ]);
});

Deno.test("parseConfig() names path and value of a bad port", () => {
  const text = withApps(
    { Name: "a", Ports: [1], Targets: ["h:1"] },
    { Name: "b", Ports: [2, 3, 70000], Targets: ["h:1"] },
  );

  const problems = problemsOf(text);

  assert.equal(problems.length, 1);
  assert.equal(
    formatProblem(problems[0]!),
    "Apps[1].Ports[2]: 70000 is not a port (1-65535)",
  );
});

Deno.test("parseConfig() rejects a port that is not 1-65535", async (t) => {
  const rows: [unknown, string | RegExp][] = [
    [0, "0 is not a port (1-65535)"],
    [70000, "70000 is not a port (1-65535)"],
    [65536, "65536 is not a port (1-65535)"],
    [1.5, "1.5 is not a port (1-65535)"],
    [-1, "-1 is not a port (1-65535)"],
    [
      "80",
      '"80" is a string: write one port as the number 80, without quotes, or a range as "first-last"',
    ],
    ["0", '"0" is not a port: use an integer 1-65535, without quotes'],
    [
      "080",
      '"080" is a string: write one port as the number 80, without quotes, or a range as "first-last"',
    ],
    ["70000", '"70000" is not a port: use an integer 1-65535, without quotes'],
    [null, /^null is not a port: /],
    [true, /^true is not a port: /],
    [[80], /^\[80\] is not a port: /],
    ["10-5", '"10-5" is not a port range: 10 is greater than 5'],
    ["a-b", /^"a-b" is not a port range: /],
    [
      "1-70000",
      '"1-70000" is not a port range: both ends must be ports (1-65535)',
    ],
    [
      "0-10",
      '"0-10" is not a port range: both ends must be ports (1-65535)',
    ],
    ["1-700000", /^"1-700000" is not a port range: /],
    ["", /^"" is not a port range: /],
    [" 80-90", /^" 80-90" is not a port range: /],
    ["80-", /^"80-" is not a port range: /],
    ["1-2-3", /^"1-2-3" is not a port range: /],
  ];
  for (const [value, message] of rows) {
    await t.step(JSON.stringify(value), () => {
      assertOneProblem(
        withApp({ Ports: [8080, value] }),
        "Apps[0].Ports[1]",
        message,
      );
    });
  }
});

Deno.test("parseConfig() rejects missing or empty Ports", async (t) => {
  await t.step("missing", () => {
    assertOneProblem(
      withApp({ Ports: undefined }),
      "Apps[0].Ports",
      "is missing: add a list with at least one entry",
    );
  });
  await t.step("empty", () => {
    assertOneProblem(
      withApp({ Ports: [] }),
      "Apps[0].Ports",
      "is empty: list at least one entry",
    );
  });
  await t.step("not a list", () => {
    assertOneProblem(
      withApp({ Ports: 8080 }),
      "Apps[0].Ports",
      "8080 is not a list: write [8080]",
    );
  });
});

Deno.test("parseConfig() rejects a port used by two apps", () => {
  const text = withApps(
    { Name: "a", Ports: [6001], Targets: ["h:1"] },
    { Name: "b", Ports: [7000, 6001], Targets: ["h:1"] },
  );

  assertOneProblem(
    text,
    "Apps[1].Ports[1]",
    'port 6001 is already used by Apps[0].Ports[0] in app "a": a port belongs to one app, once',
  );
});

Deno.test("parseConfig() rejects the same port twice in one app", () => {
  assertOneProblem(
    withApp({ Ports: [6001, 6002, 6001] }),
    "Apps[0].Ports[2]",
    "port 6001 is already used by Apps[0].Ports[0] in this app: a port belongs to one app, once",
  );
});

Deno.test("parseConfig() rejects a port inside another app's range", () => {
  const text = withApps(
    { Name: "a", Ports: ["6000-6100"], Targets: ["h:1"] },
    { Name: "b", Ports: [6050], Targets: ["h:1"] },
  );

  assertOneProblem(
    text,
    "Apps[1].Ports[0]",
    /^port 6050 is already used by Apps\[0\]\.Ports\[0\] in app "a"/,
  );
});

Deno.test("parseConfig() rejects a port inside a range of its app", () => {
  assertOneProblem(
    withApp({ Ports: ["6000-6100", 6050] }),
    "Apps[0].Ports[1]",
    /^port 6050 is already used by Apps\[0\]\.Ports\[0\] in this app/,
  );
});

Deno.test("parseConfig() names the shared ports of overlapping ranges", () => {
  const text = withApps(
    { Name: "a", Ports: ["6050-6200"], Targets: ["h:1"] },
    { Name: "b", Ports: ["6000-6100"], Targets: ["h:1"] },
  );

  // The range that starts later is the one reported.
  assertOneProblem(
    text,
    "Apps[0].Ports[0]",
    /^port 6050-6100 is already used by Apps\[1\]\.Ports\[0\] in app "b"/,
  );
});

Deno.test("parseConfig() reports each range inside a wide range", () => {
  const problems = problemsOf(withApps(
    { Name: "a", Ports: ["1000-2000"], Targets: ["h:1"] },
    { Name: "b", Ports: [1500], Targets: ["h:1"] },
    { Name: "c", Ports: ["1900-2100"], Targets: ["h:1"] },
  ));

  assert.equal(problems.length, 2);
  assert.equal(problems[0]!.path, "Apps[1].Ports[0]");
  assert.match(problems[0]!.message, /^port 1500 /);
  assert.equal(problems[1]!.path, "Apps[2].Ports[0]");
  assert.match(problems[1]!.message, /^port 1900-2000 /);
});

Deno.test("parseConfig() accepts ranges that touch", () => {
  const config = parseConfig(withApps(
    { Name: "a", Ports: ["6000-6100"], Targets: ["h:1"] },
    { Name: "b", Ports: [6101, "5000-5999"], Targets: ["h:1"] },
  ));

  assert.equal(config.apps.length, 2);
});

// Names

Deno.test("parseConfig() rejects a bad app name", async (t) => {
  const rows: [string, unknown, string][] = [
    ["missing", undefined, "is missing: every app needs a unique name"],
    ["empty", "", '"" is not a name: use a non-empty string'],
    ["whitespace", " \t ", '" \\t " is not a name: use a non-empty string'],
    ["a number", 5, "5 is not a name: use a non-empty string"],
    ["null", null, "null is not a name: use a non-empty string"],
    [
      "a line break",
      "web\nINFO forged",
      '"web\\nINFO forged" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
    [
      "a C1 control",
      "web\u009b31m",
      '"web\\u009b31m" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
    [
      "an escape",
      "web\u001b[31m",
      '"web\\u001b[31m" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
    [
      "a text direction override",
      "evil\u202egnp.exe",
      '"evil\\u202egnp.exe" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
    [
      "a zero-width space",
      "web\u200b",
      '"web\\u200b" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
    [
      "a line separator",
      "web\u2028INFO forged",
      '"web\\u2028INFO forged" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
    [
      "a no-break space",
      "a\u00a0b",
      '"a\\u00a0b" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
    [
      "half of a surrogate pair",
      "web\ud800",
      '"web\\ud800" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
    [
      "a format character outside the first plane",
      "web\u{e0001}",
      '"web\\udb40\\udc01" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    ],
  ];
  for (const [title, name, message] of rows) {
    await t.step(title, () => {
      assertOneProblem(withApp({ Name: name }), "Apps[0].Name", message);
    });
  }
});

Deno.test("parseConfig() limits an app name to 256 characters", () => {
  // Characters are code points: an emoji counts once.
  const longest = "\u{1f680}".repeat(256);
  assert.equal(parseConfig(withApp({ Name: longest })).apps[0]!.name, longest);
  assertOneProblem(
    withApp({ Name: "x".repeat(257) }),
    "Apps[0].Name",
    "is 257 characters long: use a name of at most 256 characters",
  );
});

Deno.test("parseConfig() rejects a target listed twice", () => {
  assertOneProblem(
    withApp({ Targets: ["127.0.0.1:9000", "127.0.0.1:9000"] }),
    "Apps[0].Targets[1]",
    '"127.0.0.1:9000" is already listed as Targets[0] of this app: list each target once',
  );
});

Deno.test("parseConfig() names an app with an invalid name by path", () => {
  const ports = problemsOf(withApps(
    { Name: "b\n", Ports: [6002], Targets: ["127.0.0.1:9001"] },
    { Name: "c", Ports: [6002], Targets: ["127.0.0.1:9001"] },
  ));
  assert.deepEqual(ports.map(formatProblem), [
    'Apps[0].Name: "b\\n" is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces',
    "Apps[1].Ports[0]: port 6002 is already used by Apps[0].Ports[0]: a port belongs to one app, once",
  ]);
  // A loop through an app whose name is invalid must be listed as a problem,
  // not end in a TypeError.
  const loops = problemsOf(
    withApps(
      { Name: "a", Ports: [7001], Targets: ["127.0.0.1:7002"] },
      { Name: "b\n", Ports: [7002], Targets: ["127.0.0.1:7001"] },
    ),
  ).map(formatProblem);
  assert.equal(loops.length, 3);
  assert.equal(
    loops[0],
    'Apps[0].Targets[0]: "127.0.0.1:7002" is port 7002 of this proxy (Apps[1], whose targets lead back to app "a"): connections would loop back into the proxy; point it at the server instead',
  );
  assert.equal(
    loops[2],
    'Apps[1].Targets[0]: "127.0.0.1:7001" is port 7001 of this proxy (app "a", whose targets lead back to Apps[1]): connections would loop back into the proxy; point it at the server instead',
  );
});

Deno.test("parseConfig() rejects nesting too deep to parse", () => {
  const depth = 100_000;
  const text = `{"Apps":\n${"[".repeat(depth)}${"]".repeat(depth)}}`;
  assertOneProblem(
    text,
    "",
    `invalid JSON at line 2, column ${depth}: arrays and objects are nested ${
      depth + 1
    } levels deep, more than the parser can read; a config needs no more than 4 levels`,
  );
});

Deno.test("parseConfig() reads an app's MaxConnections", () => {
  const config = parseConfig(withApp({ MaxConnections: 250 }));

  assert.equal(config.apps[0]!.maxConnections, 250);
  assert.equal(parseConfig(withApp({})).apps[0]!.maxConnections, undefined);
});

Deno.test("parseConfig() rejects an invalid app MaxConnections", async (t) => {
  for (const value of [0, -1, 1.5, "10", 1_000_001, null]) {
    await t.step(JSON.stringify(value), () => {
      assertOneProblem(
        withApp({ MaxConnections: value }),
        "Apps[0].MaxConnections",
        `${
          JSON.stringify(value)
        } is not a connection count: use an integer from 1 to 1000000, or leave it out for no limit of the app's own`,
      );
    });
  }
});

Deno.test("parseConfig() rejects a duplicate app name", () => {
  const text = withApps(
    { Name: "web", Ports: [1], Targets: ["h:1"] },
    { Name: "api", Ports: [2], Targets: ["h:1"] },
    { Name: "web", Ports: [3], Targets: ["h:1"] },
  );

  assertOneProblem(
    text,
    "Apps[2].Name",
    '"web" is already the name of Apps[0]: names must be unique',
  );
});

// Targets

Deno.test("parseConfig() rejects missing or empty Targets", async (t) => {
  await t.step("missing", () => {
    assertOneProblem(
      withApp({ Targets: undefined }),
      "Apps[0].Targets",
      "is missing: add a list with at least one entry",
    );
  });
  await t.step("empty", () => {
    assertOneProblem(
      withApp({ Targets: [] }),
      "Apps[0].Targets",
      "is empty: list at least one entry",
    );
  });
  await t.step("a string", () => {
    assertOneProblem(
      withApp({ Targets: "h:1" }),
      "Apps[0].Targets",
      '"h:1" is not a list: write ["h:1"]',
    );
  });
});

Deno.test("parseConfig() rejects a target that is not host:port", async (t) => {
  const rows: [unknown, RegExp][] = [
    ["host", /^"host" is not a target: the port is missing/],
    ["host:", /^"host:" is not a target: "" is not a port/],
    [":80", /^":80" is not a target: "" is not a host name/],
    ["host:abc", /^"host:abc" is not a target: "abc" is not a port/],
    [
      "::1:9001",
      /^"::1:9001" is not a target: write IPv6 addresses in brackets/,
    ],
    ["[zz]:1", /^"\[zz\]:1" is not a target: "zz" in brackets is not an IPv6/],
    ["[::1]", /^"\[::1\]" is not a target: /],
    ["[127.0.0.1]:80", /^"\[127\.0\.0\.1\]:80" is not a target: /],
    ["host:0", /^"host:0" is not a target: port 0 is out of range/],
    ["host:65536", /^"host:65536" is not a target: port 65536 is out of range/],
    ["host:123456", /^"host:123456" is not a target: "123456" is not a port/],
    ["host:-1", /^"host:-1" is not a target: "-1" is not a port/],
    ["256.0.0.1:80", /^"256\.0\.0\.1:80" is not a target: /],
    ["bad host:80", /^"bad host:80" is not a target: /],
    [80, /^80 is not a target: use a "host:port" string$/],
    [null, /^null is not a target: /],
  ];
  for (const [value, message] of rows) {
    await t.step(JSON.stringify(value), () => {
      assertOneProblem(
        withApp({ Targets: ["h:1", value] }),
        "Apps[0].Targets[1]",
        message,
      );
    });
  }
});

Deno.test("parseConfig() accepts IPv6 targets in brackets", () => {
  const config = parseConfig(withApp({ Targets: ["[::1]:9001"] }));

  assert.deepEqual(config.apps[0]!.targets, [
    { hostname: "::1", port: 9001, literal: true, label: "[::1]:9001" },
  ]);
});

// Unknown keys

Deno.test("parseConfig() hints at Ports for an app key Prots", () => {
  const problems = problemsOf(
    withApps({ Name: "web", Prots: [80], Targets: ["h:1"] }),
  );

  const unknown = problems.find((p) => p.path === "Apps[0].Prots");
  assert.ok(unknown, JSON.stringify(problems));
  assert.equal(unknown.message, 'unknown key: did you mean "Ports"?');
});

Deno.test("parseConfig() hints at Apps for a top-level key Aps", () => {
  const problems = problemsOf(JSON.stringify({ Aps: [VALID_APP] }));

  assert.equal(problems.length, 2);
  assert.equal(problems[0]!.path, "Aps");
  assert.equal(problems[0]!.message, 'unknown key: did you mean "Apps"?');
  assert.equal(problems[1]!.path, "Apps");
  assert.match(problems[1]!.message, /^is missing/);
});

Deno.test("parseConfig() hints at keys that differ in case", async (t) => {
  const rows: [string, string, string][] = [
    ["ports", "Apps[0].ports", "Ports"],
    ["NAME", "Apps[0].NAME", "Name"],
  ];
  for (const [key, path, hint] of rows) {
    await t.step(key, () => {
      const problems = problemsOf(withApp({ [key]: "x" }));
      const unknown = problems.find((p) => p.path === path);
      assert.ok(unknown, JSON.stringify(problems));
      assert.equal(unknown.message, `unknown key: did you mean "${hint}"?`);
    });
  }
});

Deno.test("parseConfig() hints at setting names", async (t) => {
  const rows: [string, string][] = [
    ["Balanse", "Balance"],
    ["ConectTimeoutMs", "ConnectTimeoutMs"],
    ["Mdoe", "Mode"],
    ["BackofMs", "BackoffMs"],
  ];
  for (const [key, hint] of rows) {
    await t.step(key, () => {
      assertOneProblem(
        withSettings({ [key]: 1 }),
        key,
        `unknown key: did you mean "${hint}"?`,
      );
    });
  }
});

Deno.test("parseConfig() quotes an unknown key with a line break", () => {
  assertOneProblem(
    withApp({ "x\nINFO forged": 1 }),
    'Apps[0]."x\\nINFO forged"',
    "unknown key: known keys are Name, Ports, Targets, Balance, MaxConnections",
  );
});

Deno.test("parseConfig() lists known keys when no key is close", () => {
  assertOneProblem(
    withApp({ Colour: "red" }),
    "Apps[0].Colour",
    "unknown key: known keys are Name, Ports, Targets, Balance, MaxConnections",
  );
});

Deno.test("parseConfig() rejects a key written twice", () => {
  const problems = problemsOf(
    '{"Apps": [{"Name": "a", "Name": "b", "Ports": [1], "Targets": ["h:1"]}],\n "Apps": []}',
  );
  const paths = problems.map((p) => p.path);

  assert.ok(paths.includes("Apps[0].Name"), JSON.stringify(problems));
  assert.ok(paths.includes("Apps"), JSON.stringify(problems));
  assert.match(
    problems.find((p) => p.path === "Apps")!.message,
    /^is written twice in one object \(again at line 2, column 2\)/,
  );
});

Deno.test("parseConfig() reads a balancing policy per app", () => {
  const config = parseConfig(JSON.stringify({
    Balance: "random",
    Apps: [
      { ...VALID_APP, Balance: "round-robin" },
      { Name: "api", Ports: [8081], Targets: ["127.0.0.1:9001"] },
    ],
  }));

  assert.equal(config.apps[0]!.balance, "round-robin");
  assert.equal(config.apps[1]!.balance, undefined);
  assert.equal(config.settings.balance, "random");
});

Deno.test("parseConfig() rejects an invalid per-app policy", () => {
  assertOneProblem(
    withApp({ Balance: "fastest" }),
    "Apps[0].Balance",
    /^"fastest" is not valid: use one of "least-connections", /,
  );
});

Deno.test("parseConfig() lists settings for an unknown top-level key", () => {
  const problems = problemsOf(withSettings({ Verbosity: 3 }));

  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.path, "Verbosity");
  assert.match(problems[0]!.message, /^unknown key: known keys are Apps, /);
  for (const key of ["ListenAddress", "Balance", "Mode", "SteerPrefixes"]) {
    assert.ok(problems[0]!.message.includes(key), key);
  }
});

Deno.test("parseConfig() rejects a __proto__ key as unknown", () => {
  const problems = problemsOf(
    '{"__proto__": {"Aps": 1}, "Apps": [' + JSON.stringify(VALID_APP) + "]}",
  );

  assert.equal(problems.length, 1);
  assert.equal(problems[0]!.path, "__proto__");
});

// Settings

Deno.test("parseConfig() applies the default of every setting", () => {
  const { settings } = parseConfig(withSettings({}));

  assert.equal(settings.listenAddress, "::");
  assert.equal(settings.balance, "least-connections");
  assert.equal(settings.connectTimeoutMs, 5_000);
  assert.equal(settings.backoffMs, 1_000);
  assert.equal(settings.maxBackoffMs, 30_000);
  assert.equal(settings.drainTimeoutMs, 30_000);
  assert.equal(settings.idleTimeoutMs, 3_600_000);
  assert.equal(settings.mode, "listeners");
  assert.deepEqual(settings.steerPrefixes.map(formatPrefix), [
    "127.0.0.0/8",
    "::1/128",
  ]);
});

Deno.test("parseConfig() reads a valid value of every setting", () => {
  const { settings } = parseConfig(withSettings({
    ListenAddress: "127.0.0.1",
    Balance: "round-robin",
    ConnectTimeoutMs: 250,
    BackoffMs: 100,
    MaxBackoffMs: 100,
    DrainTimeoutMs: 0,
    IdleTimeoutMs: 0,
    Mode: "bpf",
    SteerPrefixes: ["192.0.2.0/24", "2001:db8::/32"],
  }));

  assert.equal(settings.listenAddress, "127.0.0.1");
  assert.equal(settings.balance, "round-robin");
  assert.equal(settings.connectTimeoutMs, 250);
  assert.equal(settings.backoffMs, 100);
  assert.equal(settings.maxBackoffMs, 100);
  assert.equal(settings.drainTimeoutMs, 0);
  assert.equal(settings.idleTimeoutMs, 0);
  assert.equal(settings.mode, "bpf");
  assert.deepEqual(settings.steerPrefixes.map(formatPrefix), [
    "192.0.2.0/24",
    "2001:db8::/32",
  ]);
});

Deno.test("parseConfig() accepts every Balance policy", async (t) => {
  for (const policy of ["least-connections", "round-robin", "random"]) {
    await t.step(policy, () => {
      const { settings } = parseConfig(withSettings({ Balance: policy }));
      assert.equal(settings.balance, policy);
    });
  }
});

Deno.test("parseConfig() accepts every Mode", async (t) => {
  for (const mode of ["listeners", "bpf"]) {
    await t.step(mode, () => {
      const { settings } = parseConfig(withSettings({ Mode: mode }));
      assert.equal(settings.mode, mode);
    });
  }
});

Deno.test("parseConfig() accepts literal listen addresses", async (t) => {
  for (const address of ["0.0.0.0", "::", "::1", "192.0.2.7", "fe80::1"]) {
    await t.step(address, () => {
      const { settings } = parseConfig(
        withSettings({ ListenAddress: address }),
      );
      assert.equal(settings.listenAddress, address);
    });
  }
});

Deno.test("parseConfig() reads MaxConnections", () => {
  assert.equal(
    parseConfig(withSettings({})).settings.maxConnections,
    undefined,
  );
  const { settings } = parseConfig(withSettings({ MaxConnections: 1 }));
  assert.equal(settings.maxConnections, 1);
});

Deno.test("parseConfig() accepts durations at their minimum", async (t) => {
  const rows: [string, number, keyof typeof DEFAULT_SETTINGS][] = [
    ["ConnectTimeoutMs", 1, "connectTimeoutMs"],
    ["BackoffMs", 1, "backoffMs"],
    ["DrainTimeoutMs", 0, "drainTimeoutMs"],
    ["IdleTimeoutMs", 0, "idleTimeoutMs"],
    ["HalfCloseTimeoutMs", 0, "halfCloseTimeoutMs"],
  ];
  for (const [key, value, field] of rows) {
    await t.step(key, () => {
      const { settings } = parseConfig(withSettings({ [key]: value }));
      assert.equal(settings[field], value);
    });
  }
});

Deno.test("parseConfig() rejects an invalid setting", async (t) => {
  const rows: [Record<string, unknown>, string, string | RegExp][] = [
    [
      { ConnectTimeoutMs: 0 },
      "ConnectTimeoutMs",
      "0 is not a duration: use an integer number of milliseconds from 1 to 2147483647",
    ],
    [{ ConnectTimeoutMs: -5 }, "ConnectTimeoutMs", /^-5 is not a duration: /],
    [
      { ConnectTimeoutMs: "5s" },
      "ConnectTimeoutMs",
      /^"5s" is not a duration: /,
    ],
    [{ ConnectTimeoutMs: 1.5 }, "ConnectTimeoutMs", /^1\.5 is not a duration/],
    [{ ConnectTimeoutMs: null }, "ConnectTimeoutMs", /^null is not a duration/],
    [
      { BackoffMs: 0 },
      "BackoffMs",
      /^0 is not a duration: .* from 1 to 2147483647$/,
    ],
    [{ MaxBackoffMs: 0 }, "MaxBackoffMs", /^0 is not a duration: /],
    [
      { DrainTimeoutMs: -1 },
      "DrainTimeoutMs",
      /^-1 is not a duration: .* from 0 to 2147483647$/,
    ],
    [{ IdleTimeoutMs: "1h" }, "IdleTimeoutMs", /^"1h" is not a duration: /],
    [
      { Balance: "fastest" },
      "Balance",
      '"fastest" is not valid: use one of "least-connections", "round-robin", "random"',
    ],
    [{ Balance: 1 }, "Balance", /^1 is not valid: use one of /],
    [
      { Mode: "ebpf" },
      "Mode",
      '"ebpf" is not valid: use one of "listeners", "bpf"',
    ],
    [
      { MaxConnections: 0 },
      "MaxConnections",
      "0 is not a connection count: use an integer from 1 to 1000000, or leave MaxConnections out to derive it from the open-file limit",
    ],
    [
      { MaxConnections: "10k" },
      "MaxConnections",
      /^"10k" is not a connection count: /,
    ],
    [
      { MaxConnections: 2.5 },
      "MaxConnections",
      /^2\.5 is not a connection count: /,
    ],
    [
      { SourcePorts: "random" },
      "SourcePorts",
      '"random" is not valid: use one of "rotate", "kernel"',
    ],
    [
      { ListenAddress: "localhost" },
      "ListenAddress",
      /^"localhost" is not an IP address: use a literal such as /,
    ],
    [
      { ListenAddress: "[::1]" },
      "ListenAddress",
      /^"\[::1\]" is not an IP address/,
    ],
    [
      { ListenAddress: "127.0.0.1:80" },
      "ListenAddress",
      /^"127\.0\.0\.1:80" is not an IP address/,
    ],
    [{ ListenAddress: "" }, "ListenAddress", /^"" is not an IP address/],
    [{ ListenAddress: 0 }, "ListenAddress", /^0 is not an IP address/],
    [
      { SteerPrefixes: ["10.0.0.1/8"] },
      "SteerPrefixes[0]",
      '"10.0.0.1/8" is not a prefix: address bits are set past /8',
    ],
    [
      { SteerPrefixes: ["10.0.0.0/8", "10.0.0.0"] },
      "SteerPrefixes[1]",
      /^"10\.0\.0\.0" is not a prefix: /,
    ],
    [
      { SteerPrefixes: [8] },
      "SteerPrefixes[0]",
      "8 is not a string",
    ],
    [
      { SteerPrefixes: ["::ffff:127.0.0.0/104"] },
      "SteerPrefixes[0]",
      '"::ffff:127.0.0.0/104" is an IPv4-mapped prefix, which never matches, because steering sees IPv4 connections with IPv4 addresses: write "127.0.0.0/8" instead',
    ],
    [
      { SteerPrefixes: ["10.0.0.0/8", "2001:db8::/32", "2001:DB8:0::/32"] },
      "SteerPrefixes[2]",
      '"2001:DB8:0::/32" is listed twice, also at SteerPrefixes[1]: remove one',
    ],
    [
      { SteerPrefixes: [] },
      "SteerPrefixes",
      /^\[\] is not valid: use a non-empty list of prefixes/,
    ],
    [
      { SteerPrefixes: "10.0.0.0/8" },
      "SteerPrefixes",
      /^"10\.0\.0\.0\/8" is not valid: /,
    ],
    [
      { BackoffMs: 1000, MaxBackoffMs: 999 },
      "MaxBackoffMs",
      "999 is less than BackoffMs (1000): raise it or lower BackoffMs",
    ],
    [
      { BackoffMs: 60000 },
      "MaxBackoffMs",
      "30000 is less than BackoffMs (60000): raise it or lower BackoffMs",
    ],
  ];
  for (const [fields, path, message] of rows) {
    await t.step(JSON.stringify(fields), () => {
      assertOneProblem(withSettings(fields), path, message);
    });
  }
});

Deno.test("parseConfig() rejects durations that overflow timers", async (t) => {
  // setTimeout() stores its delay as a signed 32-bit integer and fires at
  // once for larger values, which would abort every connect.
  for (const key of ["ConnectTimeoutMs", "DrainTimeoutMs"]) {
    await t.step(key, () => {
      const problems = problemsOf(withSettings({ [key]: 2 ** 31 }));
      assert.equal(problems.length, 1);
      assert.equal(problems[0]!.path, key);
    });
  }
});

Deno.test("parseConfig() leaves the default prefixes unchanged", () => {
  parseConfig(withSettings({ SteerPrefixes: ["10.0.0.0/8"] }));
  const { settings } = parseConfig(withSettings({}));

  assert.deepEqual(DEFAULT_SETTINGS.steerPrefixes.map(formatPrefix), [
    "127.0.0.0/8",
    "::1/128",
  ]);
  assert.notEqual(settings.steerPrefixes, DEFAULT_SETTINGS.steerPrefixes);
  assert.ok(Object.isFrozen(DEFAULT_SETTINGS));
});

// Several problems

Deno.test("parseConfig() reports every problem in a file", () => {
  const text = `{
    "Balance": "fastest",
    "Apps": [
      {"Name": "web", "Ports": [80, 70000], "Targets": ["host"]},
      {"Name": "web", "Prots": [81], "Targets": []},
      {"Name": "api", "Ports": ["70-90"], "Targets": ["[zz]:1"]},
    ],
  }`;

  const problems = problemsOf(text);
  const paths = problems.map((p) => p.path);

  assert.equal(problems.length, 9, JSON.stringify(problems, null, 2));
  for (
    const path of [
      "Balance",
      "Apps[0].Ports[1]",
      "Apps[0].Targets[0]",
      "Apps[1].Prots",
      "Apps[1].Ports",
      "Apps[1].Targets",
      "Apps[1].Name",
      "Apps[2].Targets[0]",
      // Port 80 of Apps[0] lies inside "70-90" of Apps[2].
      "Apps[0].Ports[0]",
    ]
  ) {
    assert.ok(paths.includes(path), `${path} missing from ${paths}`);
  }
  assert.ok(
    problems.some((p) =>
      p.path === "Apps[1].Prots" && /"Ports"/.test(p.message)
    ),
  );
});

Deno.test("parseConfig() reports up to three syntax errors", () => {
  const problems = problemsOf('{"Apps": [1 2], "x" 3}');

  assert.equal(problems.length, 2, JSON.stringify(problems));
  assert.equal(
    problems[0]!.message,
    'invalid JSON at line 1, column 13: a "," is expected',
  );
  assert.equal(
    problems[1]!.message,
    'invalid JSON at line 1, column 21: a ":" is expected',
  );
  assert.equal(problemsOf("not json at all").length, 3);
});

// ConfigError

Deno.test("ConfigError lists the source and every problem", () => {
  let error: unknown;
  try {
    parseConfig(
      withApps({ Name: "", Ports: [0], Targets: ["h:1"] }),
      "anyport.json",
    );
  } catch (caught) {
    error = caught;
  }

  assert.ok(error instanceof ConfigError);
  assert.ok(error instanceof Error);
  assert.equal(error.name, "ConfigError");
  assert.equal(error.problems.length, 2);
  assert.equal(
    error.message,
    'Invalid config "anyport.json": 2 problems\n' +
      '  Apps[0].Name: "" is not a name: use a non-empty string\n' +
      "  Apps[0].Ports[0]: 0 is not a port (1-65535)",
  );
});

Deno.test("ConfigError names the default source config", () => {
  assert.throws(
    () => parseConfig("{}"),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message.startsWith('Invalid config "config": 1 problem\n  '),
  );
});

Deno.test("formatProblem() omits the path at the root", () => {
  assert.equal(formatProblem({ path: "", message: "bad root" }), "bad root");
  assert.equal(
    formatProblem({ path: "Apps[0]", message: "bad app" }),
    "Apps[0]: bad app",
  );
});

Deno.test("parseConfig() lists problems in app order", () => {
  const problems = problemsOf(JSON.stringify({
    ListenAddress: "127.0.0.1",
    Balance: "fastest",
    Apps: [
      { Name: "a", Ports: [80], Targets: ["127.0.0.1:80"] },
      { Name: "b", Ports: [81, 0], Targets: ["h:1"] },
    ],
  }));

  assert.deepEqual(problems.map((p) => p.path), [
    "Balance",
    "Apps[0].Targets[0]",
    "Apps[1].Ports[1]",
  ]);
});

Deno.test("parseConfig() rejects more prefixes than BPF steering holds", () => {
  const prefixes = Array.from(
    { length: 4097 },
    (_, i) => `10.${i >> 8}.${i & 255}.0/24`,
  );
  const problems = problemsOf(JSON.stringify({
    SteerPrefixes: [...prefixes, "::1/128"],
    Apps: [{ Name: "a", Ports: [80], Targets: ["h:1"] }],
  }));

  assert.deepEqual(problems, [{
    path: "SteerPrefixes",
    message:
      "lists 4097 IPv4 prefixes, more than the 4096 that BPF steering holds: merge them into shorter prefixes",
  }]);
});

Deno.test("parseConfig() names the unexpected character", () => {
  const problems = problemsOf("{'Apps': []}");

  assert.equal(
    problems[0]!.message,
    `invalid JSON at line 1, column 2: unexpected "'": use double quotes for names and strings`,
  );
});

Deno.test("readConfigText() rejects bytes that are not UTF-8", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const text = new TextEncoder().encode('{\n  "Apps": [{"Name": "ab');
    await Deno.writeFile(path, new Uint8Array([...text, 0xff, 0x22]));

    await assert.rejects(
      readConfigText(path),
      (error: Error) =>
        error.message.includes(
          "byte 0xff at line 2, column 24 is not UTF-8: save the file as UTF-8",
        ),
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("readConfigText() names UTF-16", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    const text = '{"Apps": []}';
    const bytes = new Uint8Array(2 + text.length * 2);
    bytes.set([0xff, 0xfe]);
    for (let i = 0; i < text.length; i++) bytes[2 + i * 2] = text.charCodeAt(i);
    await Deno.writeFile(path, bytes);

    await assert.rejects(
      readConfigText(path),
      /the file looks like UTF-16: save it as UTF-8/,
    );
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("readConfigText() reads UTF-8 with a byte order mark", async () => {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(
      path,
      '\uFEFF{"Apps": [{"Name": "café", "Ports": [80], "Targets": ["h:1"]}]}',
    );

    const config = parseConfig(await readConfigText(path));

    assert.equal(config.apps[0]!.name, "café");
  } finally {
    await Deno.remove(path);
  }
});

Deno.test("parseConfig() places a stray app setting", () => {
  const problems = problemsOf(JSON.stringify({
    Apps: [{
      Name: "web",
      Ports: [80],
      Targets: ["h:1"],
      IdleTimeoutMs: 1000,
    }],
  }));

  assert.deepEqual(problems.map((p) => `${p.path}: ${p.message}`), [
    'Apps[0].IdleTimeoutMs: IdleTimeoutMs is a setting of the whole config, not of one app: move it to the top level, next to "Apps"',
  ]);
});
