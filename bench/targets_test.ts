import assert from "node:assert/strict";
import type { Results, RowResult, StartupResult } from "./_results.ts";
import {
  checkTargets,
  describeChecks,
  formatMeasured,
  medianInterval,
  type TargetCheck,
  unpairedRuns,
} from "./targets.ts";

/** Returns a row measured in `values.conn.length` slices, numbered from 1. */
function row(
  id: string,
  values: { conn: number[]; idle?: number[] },
): RowResult {
  const slices = values.conn.map((_, i) => i + 1);
  const idle = values.idle ?? [5.5];
  return {
    id,
    label: id,
    runs: {
      connPerSec: values.conn,
      msgPerSec: values.conn,
      p99Us: values.conn.map((v) => 1e6 / v),
      bulkGbitPerSec: values.conn,
      idleKiBPerConn: idle,
    },
    rounds: {
      connPerSec: slices,
      msgPerSec: slices,
      p99Us: slices,
      bulkGbitPerSec: slices,
      idleKiBPerConn: idle.map((_, i) => i + 1),
    },
    errors: {},
    problems: [],
  };
}

function startup(
  id: string,
  ports: number,
  rss: number[],
  more: { ms?: number[]; rounds?: number[] } = {},
): StartupResult {
  return {
    id,
    label: id,
    ports,
    runs: { startupMs: more.ms ?? rss.map(() => 120), rssMiB: rss },
    rounds: more.rounds ?? rss.map((_, i) => i + 1),
    problems: [],
  };
}

function results(
  anyport: RowResult,
  startups: StartupResult[] = [],
  startedAt = "2026-12-05T00:00:00.000Z",
): Results {
  return {
    version: 1,
    startedAt,
    durationSeconds: 1,
    command: "test",
    machine: {
      cpu: "",
      cores: 2,
      kernel: "",
      deno: "",
      haproxy: "",
      nginx: "",
      iperf3: "",
      compiler: "",
    },
    settings: {
      seconds: 2,
      warmupSeconds: 0.5,
      rounds: 1,
      conns: 32,
      idleConns: 5000,
      startupPorts: 10000,
      startupProbeStep: 100,
    },
    baseline: "haproxy-1",
    rows: [anyport, row("haproxy-1", { conn: Array(20).fill(100) })],
    startup: startups,
    problems: [],
  };
}

function find(checks: TargetCheck[], words: string): TargetCheck {
  const found = checks.find((c) => c.target.startsWith(words));
  assert.ok(found, `no check of "${words}" in ${JSON.stringify(checks)}`);
  return found;
}

/** 20 ratios: 0.90, 0.91, ... 1.09 times `center`. */
function spread(center: number): number[] {
  return Array.from({ length: 20 }, (_, i) => 100 * center * (0.9 + i / 100));
}

/** Returns the verdict on one start-up figure from a 5-round run. */
function startupVerdict(ms: number[], bpfRss: number[], words: string) {
  const run = results(row("anyport", { conn: spread(1) }), [
    startup("listeners-1", 1, [58, 58, 58, 58, 58]),
    startup("bpf", 10000, bpfRss, { ms }),
  ]);
  return find(checkTargets([run]), words).verdict;
}

Deno.test("medianInterval uses ranks 6 and 15 of 20", () => {
  const samples = Array.from({ length: 20 }, (_, i) => 20 - i);
  const found = medianInterval(samples);
  assert.ok(found);
  assert.deepEqual(found.interval, [6, 15]);
  assert.ok(Math.abs(found.confidence - 0.9586) < 1e-4);
});

Deno.test("medianInterval spans few samples", () => {
  const found = medianInterval([3, 1, 2, 5, 4]);
  assert.ok(found);
  assert.deepEqual(found.interval, [1, 5]);
  assert.equal(found.confidence, 1 - 2 / 32);
  const single = medianInterval([7]);
  assert.ok(single);
  assert.deepEqual(single.interval, [7, 7]);
  assert.equal(single.confidence, 0);
  assert.equal(medianInterval([]), undefined);
});

Deno.test("medianInterval stays exact for 1,100 samples", () => {
  // 2^-1100 underflows to 0 in floating point; the ranks must not collapse.
  const samples = Array.from({ length: 1100 }, (_, i) => i + 1);
  const found = medianInterval(samples);
  assert.ok(found);
  assert.deepEqual(found.interval, [518, 583]);
  assert.ok(found.confidence >= 0.95);
  assert.ok(found.confidence < 0.96);
});

Deno.test("checkTargets judges a clear lead as met", () => {
  const checks = checkTargets([results(row("anyport", {
    conn: spread(1.2),
  }))]);
  const conn = find(checks, "short connections");
  assert.equal(conn.verdict, "met");
  assert.equal(conn.samples, 20);
  assert.ok(conn.interval);
  assert.ok(conn.interval[0] > 1);
  // p99 is the inverse of the rate here, so lower is better and met too.
  assert.equal(find(checks, "ping-pong p99").verdict, "met");
});

Deno.test("checkTargets judges parity as within noise", () => {
  const ahead = checkTargets([results(row("anyport", {
    conn: spread(1.02),
  }))]);
  assert.equal(find(ahead, "short connections").verdict, "met within noise");
  assert.equal(find(ahead, "ping-pong p99").verdict, "met within noise");
  const behind = checkTargets([results(row("anyport", {
    conn: spread(0.97),
  }))]);
  assert.equal(
    find(behind, "short connections").verdict,
    "missed within noise",
  );
  assert.equal(find(behind, "ping-pong p99").verdict, "missed within noise");
});

Deno.test("checkTargets judges a clear loss as missed", () => {
  const checks = checkTargets([results(row("anyport", {
    conn: spread(0.8),
    idle: [11, 12, 12.5, 11.5, 12],
  }))]);
  assert.equal(find(checks, "short connections").verdict, "missed");
  assert.equal(find(checks, "RSS per idle connection").verdict, "missed");
});

Deno.test("checkTargets counts the bound as met", () => {
  const checks = checkTargets([results(row("anyport", {
    conn: Array(20).fill(100),
    idle: [10, 10, 10, 10, 10],
  }))]);
  assert.equal(find(checks, "short connections").verdict, "met");
  assert.equal(find(checks, "ping-pong p99").verdict, "met");
  assert.equal(find(checks, "RSS per idle connection").verdict, "met");
});

Deno.test("checkTargets keeps few samples within noise", () => {
  const checks = checkTargets([results(row("anyport", {
    conn: spread(1.2),
    idle: [20, 21, 22],
  }))]);
  const idle = find(checks, "RSS per idle connection");
  assert.equal(idle.samples, 3);
  assert.equal(idle.verdict, "missed within noise");
});

Deno.test("checkTargets checks the start-up bounds", () => {
  const fast = [100, 110, 120, 130, 140];
  const slow = [1500, 1600, 1700, 1800, 1900];
  const small = [66, 66, 66, 66, 66];
  const large = [77.5, 77.5, 77.5, 77.5, 77.5];
  assert.equal(startupVerdict(fast, small, "start-up with 10,000"), "met");
  assert.equal(startupVerdict(slow, small, "start-up with 10,000"), "missed");
  // "Under one second" and "under 20 MB" exclude the bound itself.
  assert.equal(
    startupVerdict(Array(5).fill(1000), small, "start-up with 10,000"),
    "missed",
  );
  assert.equal(startupVerdict(fast, small, "RSS added by 10,000"), "met");
  // 19.5 MiB is more than 20 MB (19.07 MiB).
  assert.equal(startupVerdict(fast, large, "RSS added by 10,000"), "missed");
});

Deno.test("checkTargets pairs start-up RSS by round", () => {
  const run = results(row("anyport", { conn: spread(1) }), [
    // Round 2 of the 1-port config and round 4 of BPF mode failed.
    startup("listeners-1", 1, [50, 60, 60, 60], { rounds: [1, 3, 4, 5] }),
    startup("bpf", 10000, [58, 68, 68, 68], { rounds: [1, 2, 3, 5] }),
  ]);
  const added = find(checkTargets([run]), "RSS added by 10,000 ports");
  assert.equal(added.samples, 3);
  assert.equal(added.median, 8);
  assert.deepEqual(added.interval, [8, 8]);
});

Deno.test("checkTargets pools the samples of several runs", () => {
  const conn = spread(1.02);
  const runs = ["01", "02", "03"].map((hour) =>
    results(row("anyport", { conn }), [], `2026-12-05T${hour}:00:00.000Z`)
  );
  const pooled = find(checkTargets(runs), "short connections");
  assert.equal(pooled.samples, 60);
  const single = find(checkTargets([runs[0]!]), "short connections");
  assert.ok(pooled.interval);
  assert.ok(single.interval);
  assert.ok(
    pooled.interval[1] - pooled.interval[0] <
      single.interval[1] - single.interval[0],
  );
});

Deno.test("checkTargets counts a repeated run once", () => {
  const run = results(row("anyport", { conn: spread(1.02) }));
  const copy = structuredClone(run);
  assert.equal(
    find(checkTargets([run, copy]), "short connections").samples,
    20,
  );
});

Deno.test("checkTargets pairs ratios by slice number", () => {
  const run = results(row("anyport", { conn: [110, 120, 130] }));
  const baseline = run.rows[1]!;
  // The baseline lost slice 2, so slice 3 must pair with slice 3.
  baseline.runs.connPerSec = [100, 100];
  baseline.rounds!.connPerSec = [1, 3];
  const conn = find(checkTargets([run]), "short connections");
  assert.equal(conn.samples, 2);
  assert.ok(conn.median !== undefined);
  assert.ok(Math.abs(conn.median - 1.2) < 1e-9);
});

Deno.test("checkTargets leaves out missing values", () => {
  const anyport = row("anyport", { conn: spread(1.2) });
  // A figure that loadgen did not report is saved as null.
  anyport.runs.connPerSec![0] = null as unknown as number;
  anyport.runs.idleKiBPerConn = [5.5, null as unknown as number];
  const checks = checkTargets([results(anyport)]);
  assert.equal(find(checks, "short connections").samples, 19);
  assert.equal(find(checks, "RSS per idle connection").samples, 1);
  for (const line of describeChecks(checks)) assert.ok(!line.includes("NaN"));
});

Deno.test("checkTargets reports rows it cannot check", () => {
  const anyport = row("anyport", { conn: spread(1) });
  anyport.skipped = "main.ts is missing";
  const run = results(anyport, [
    startup("listeners-1", 1, [58]),
    { ...startup("bpf", 10000, []), skipped: "no bpffs" },
  ]);
  const checks = checkTargets([run]);
  assert.equal(find(checks, "short connections").verdict, "not measured");
  assert.equal(find(checks, "short connections").samples, 0);
  assert.equal(find(checks, "RSS per idle connection").verdict, "not measured");
  assert.equal(find(checks, "start-up with 10,000").verdict, "not measured");
  assert.equal(find(checks, "RSS added by 10,000").verdict, "not measured");
});

Deno.test("formatMeasured shows the interval and coverage", () => {
  const checks = checkTargets([results(row("anyport", {
    conn: spread(1.2),
  }))]);
  const conn = find(checks, "short connections");
  assert.equal(formatMeasured(conn), "1.194× (1.140× to 1.248×, 95.9%)");
  const idle = find(checks, "RSS per idle connection");
  assert.equal(formatMeasured(idle), "5.5 KiB");
  const line = describeChecks([conn])[0]!;
  assert.ok(line.startsWith("met "));
  assert.ok(line.endsWith("20 samples"));
});

Deno.test("unpairedRuns warns of files without slice numbers", () => {
  const old = results(row("anyport", { conn: spread(1) }));
  delete old.rows[0]!.rounds;
  const current = results(row("anyport", { conn: spread(1) }));
  const warnings = unpairedRuns([current, old], ["new.json", "old.json"]);
  assert.equal(warnings.length, 1);
  assert.ok(warnings[0]!.startsWith("old.json: "));
});
