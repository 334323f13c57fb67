import assert from "node:assert/strict";
import { type Config, parseConfig } from "./config.ts";
import { describeChanges } from "./config_diff.ts";

interface AppFields {
  Name: string;
  Ports: (number | string)[];
  Targets: string[];
  Balance?: string;
  MaxConnections?: number;
}

const WEB: AppFields = {
  Name: "web",
  Ports: [8080, "9000-9009"],
  Targets: ["127.0.0.1:19001", "[::1]:19002"],
};
const API: AppFields = {
  Name: "api",
  Ports: [7000],
  Targets: ["api.internal:7000"],
};

/** Parses a config of `apps` with the top-level `settings`. */
function config(
  apps: AppFields[],
  settings: Record<string, unknown> = {},
): Config {
  return parseConfig(JSON.stringify({ Apps: apps, ...settings }));
}

Deno.test("describeChanges() returns [] for the same config", () => {
  assert.deepEqual(
    describeChanges(config([WEB, API]), config([WEB, API])),
    [],
  );
});

Deno.test("describeChanges() ignores the order of apps", () => {
  assert.deepEqual(
    describeChanges(config([WEB, API]), config([API, WEB])),
    [],
  );
});

Deno.test("describeChanges() ignores the order of ports", () => {
  const reordered = { ...WEB, Ports: ["9000-9009", 8080] };

  assert.deepEqual(describeChanges(config([WEB]), config([reordered])), []);
});

Deno.test("describeChanges() ignores other spellings of the same ports", () => {
  // The app owns the same ports either way, so a reload logs no change.
  const before = config([{ ...WEB, Ports: ["6000-6001"] }]);
  const after = config([{ ...WEB, Ports: [6000, 6001] }]);

  assert.deepEqual(describeChanges(before, after), []);
});

Deno.test("describeChanges() describes an added app", () => {
  assert.deepEqual(describeChanges(config([WEB]), config([WEB, API])), [
    'app "api" added: ports 7000, targets api.internal:7000',
  ]);
});

Deno.test("describeChanges() lists every port and target of a new app", () => {
  assert.deepEqual(describeChanges(config([API]), config([API, WEB])), [
    'app "web" added: ports 8080, 9000-9009, targets 127.0.0.1:19001, [::1]:19002',
  ]);
});

Deno.test("describeChanges() describes a removed app", () => {
  assert.deepEqual(describeChanges(config([WEB, API]), config([WEB])), [
    'app "api" removed',
  ]);
});

Deno.test("describeChanges() describes a renamed app as two changes", () => {
  const renamed = { ...API, Name: "api-v2" };

  assert.deepEqual(describeChanges(config([API]), config([renamed])), [
    'app "api-v2" added: ports 7000, targets api.internal:7000',
    'app "api" removed',
  ]);
});

Deno.test("describeChanges() describes added and removed ports", () => {
  const after = { ...WEB, Ports: [8080, 8081, "9100-9199"] };

  assert.deepEqual(describeChanges(config([WEB]), config([after])), [
    'app "web": ports added 8081, 9100-9199',
    'app "web": ports removed 9000-9009',
  ]);
});

Deno.test("describeChanges() describes added and removed targets", () => {
  const after = {
    ...WEB,
    Targets: ["[::1]:19002", "127.0.0.1:19003", "127.0.0.1:19004"],
  };

  assert.deepEqual(describeChanges(config([WEB]), config([after])), [
    'app "web": targets added 127.0.0.1:19003, 127.0.0.1:19004',
    'app "web": targets removed 127.0.0.1:19001',
  ]);
});

Deno.test("describeChanges() describes a port moved between apps", () => {
  const before = config([WEB, { ...API, Ports: [7000, 7001] }]);
  const after = config([{ ...WEB, Ports: [...WEB.Ports, 7001] }, API]);

  assert.deepEqual(describeChanges(before, after), [
    'app "web": ports added 7001',
    'app "api": ports removed 7001',
  ]);
});

Deno.test("describeChanges() describes a per-app policy change", () => {
  const after = config([{ ...WEB, Balance: "round-robin" }]);

  assert.deepEqual(describeChanges(config([WEB]), after), [
    'app "web": Balance (default) -> round-robin',
  ]);
});

Deno.test("describeChanges() describes a per-app connection limit", () => {
  const limited = config([{ ...WEB, MaxConnections: 100 }]);

  assert.deepEqual(describeChanges(config([WEB]), limited), [
    'app "web": MaxConnections (none) -> 100',
  ]);
  assert.deepEqual(describeChanges(limited, config([WEB])), [
    'app "web": MaxConnections 100 -> (none)',
  ]);
});

Deno.test("describeChanges() describes changed settings", () => {
  const after = config([WEB], {
    ConnectTimeoutMs: 2000,
    Balance: "random",
    IdleTimeoutMs: 0,
  });

  assert.deepEqual(describeChanges(config([WEB]), after), [
    "Balance: least-connections -> random",
    "ConnectTimeoutMs: 5000 -> 2000",
    "IdleTimeoutMs: 3600000 -> 0",
  ]);
});

Deno.test("describeChanges() describes every setting", () => {
  const after = config([WEB], {
    ListenAddress: "127.0.0.1",
    Balance: "round-robin",
    ConnectTimeoutMs: 1,
    BackoffMs: 2,
    MaxBackoffMs: 3,
    DrainTimeoutMs: 4,
    IdleTimeoutMs: 5,
    Mode: "bpf",
    SteerPrefixes: ["10.0.0.0/8"],
  });

  assert.deepEqual(describeChanges(config([WEB]), after), [
    "ListenAddress: :: -> 127.0.0.1",
    "Balance: least-connections -> round-robin",
    "ConnectTimeoutMs: 5000 -> 1",
    "BackoffMs: 1000 -> 2",
    "MaxBackoffMs: 30000 -> 3",
    "DrainTimeoutMs: 30000 -> 4",
    "IdleTimeoutMs: 3600000 -> 5",
    "Mode: listeners -> bpf",
    "SteerPrefixes: added 10.0.0.0/8; removed 127.0.0.0/8, ::1/128",
  ]);
});

Deno.test("describeChanges() names a few of many changed prefixes", () => {
  const prefixes = (third: number) =>
    Array.from({ length: 100 }, (_, i) => `10.${third}.${i}.0/24`);
  const before = config([WEB], { SteerPrefixes: prefixes(1) });
  const after = config([WEB], {
    SteerPrefixes: [...prefixes(1).slice(0, 99), ...prefixes(2)],
  });

  const [change] = describeChanges(before, after);

  assert.match(change!, /^SteerPrefixes: added 10\.2\.0\.0\/24, /);
  assert.match(change!, / and 84 more; removed 10\.1\.99\.0\/24$/);
});

Deno.test("describeChanges() names reordered prefixes", () => {
  const before = config([WEB], { SteerPrefixes: ["10.0.0.0/8", "::1/128"] });
  const after = config([WEB], { SteerPrefixes: ["::1/128", "10.0.0.0/8"] });

  assert.deepEqual(describeChanges(before, after), [
    "SteerPrefixes: reordered",
  ]);
});

Deno.test("describeChanges() ignores a default written out", () => {
  const after = config([WEB], {
    ConnectTimeoutMs: 5000,
    SteerPrefixes: ["127.0.0.0/8", "::1/128"],
  });

  assert.deepEqual(describeChanges(config([WEB]), after), []);
});

Deno.test("describeChanges() lists app changes before settings", () => {
  const after = config([WEB, API], { Balance: "random" });

  assert.deepEqual(describeChanges(config([WEB]), after), [
    'app "api" added: ports 7000, targets api.internal:7000',
    "Balance: least-connections -> random",
  ]);
});

Deno.test("describeChanges() names a few of many added ports", () => {
  const ports = Array.from({ length: 100 }, (_, i) => 10_000 + 2 * i);
  const after = config([{ ...WEB, Ports: [...WEB.Ports, ...ports] }]);

  const [change] = describeChanges(config([WEB]), after);

  assert.match(change!, /^app "web": ports added 10000, 10002, /);
  assert.match(change!, / and 84 more$/);
});
