import assert from "node:assert/strict";
import type { Results, RowResult, StartupResult } from "./_results.ts";
import { checkTargets, medianInterval, type TargetCheck } from "./targets.ts";

/** Returns a row measured in `values.length` slices, numbered from 1. */
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

function startup(id: string, ports: number, rss: number[]): StartupResult {
  return {
    id,
    label: id,
    ports,
    runs: { startupMs: rss.map(() => 120), rssMiB: rss },
    problems: [],
  };
}

function results(anyport: RowResult, startups?: StartupResult[]): Results {
  return {
    version: 1,
    startedAt: "2026-12-05T00:00:00.000Z",
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
    startup: startups ?? [],
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

Deno.test("medianInterval uses ranks 6 and 15 of 20", () => {
  const samples = Array.from({ length: 20 }, (_, i) => 20 - i);
  const found = medianInterval(samples);
  assert.ok(found);
  assert.deepEqual(found.interval, [6, 15]);
  assert(Math.abs(found.confidence - 0.9586) < 1e-4);
});

Deno.test("medianInterval spans few samples", () => {
  const found = medianInterval([3, 1, 2, 5, 4]);
  assert.ok(found);
  assert.deepEqual(found.interval, [1, 5]);
  assert.deepEqual(found.confidence, 1 - 2 / 32);
  assert.deepEqual(medianInterval([]), undefined);
});

Deno.test("checkTargets judges a clear lead as met", () => {
  const checks = checkTargets([results(row("anyport", {
    conn: spread(1.2),
  }))]);
  const conn = find(checks, "short connections");
  assert.deepEqual(conn.verdict, "met");
  assert.deepEqual(conn.samples, 20);
  assert.ok(conn.interval);
  assert.ok(conn.interval[0] > 1);
  // p99 is the inverse of the rate here, so lower is better and met too.
  assert.deepEqual(find(checks, "ping-pong p99").verdict, "met");
  assert.deepEqual(find(checks, "RSS per idle connection").verdict, "met");
});

Deno.test("checkTargets judges parity as within noise", () => {
  const ahead = checkTargets([results(row("anyport", {
    conn: spread(1.02),
  }))]);
  assert.deepEqual(
    find(ahead, "short connections").verdict,
    "met within noise",
  );
  assert.deepEqual(find(ahead, "ping-pong p99").verdict, "met within noise");
  const behind = checkTargets([results(row("anyport", {
    conn: spread(0.97),
  }))]);
  assert.deepEqual(
    find(behind, "short connections").verdict,
    "missed within noise",
  );
  assert.deepEqual(
    find(behind, "ping-pong p99").verdict,
    "missed within noise",
  );
});

Deno.test("checkTargets judges a clear loss as missed", () => {
  const checks = checkTargets([results(row("anyport", {
    conn: spread(0.8),
    idle: [11, 12, 12.5],
  }))]);
  assert.deepEqual(find(checks, "short connections").verdict, "missed");
  assert.deepEqual(find(checks, "RSS per idle connection").verdict, "missed");
});

Deno.test("checkTargets pools the samples of several runs", () => {
  const run = results(row("anyport", { conn: spread(1.02) }));
  const pooled = find(checkTargets([run, run, run]), "short connections");
  assert.deepEqual(pooled.samples, 60);
  const single = find(checkTargets([run]), "short connections");
  assert.ok(pooled.interval);
  assert.ok(single.interval);
  assert(
    pooled.interval[1] - pooled.interval[0] <
      single.interval[1] - single.interval[0],
  );
});

Deno.test("checkTargets subtracts the 1-port RSS per round", () => {
  const checks = checkTargets([results(row("anyport", { conn: spread(1) }), [
    startup("listeners-1", 1, [58, 59, 60]),
    startup("bpf", 10000, [66, 67, 90]),
  ])]);
  const added = find(checks, "RSS added by 10,000 ports");
  assert.deepEqual(added.median, 8);
  assert.deepEqual(added.interval, [8, 30]);
  assert.deepEqual(added.verdict, "met within noise");
  assert.deepEqual(find(checks, "start-up with 10,000 ports").verdict, "met");
});

Deno.test("checkTargets reports a row without samples", () => {
  const anyport = row("anyport", { conn: spread(1) });
  anyport.runs = {};
  const checks = checkTargets([results(anyport)]);
  assert.deepEqual(find(checks, "short connections").verdict, "not measured");
  assert.deepEqual(find(checks, "short connections").samples, 0);
});
