/**
 * One round of measurements on one row: short connections, ping-pong and
 * bulk throughput on one proxy process, then memory on a fresh one.
 */
import type { Contender } from "./_contenders.ts";
import {
  runJson,
  type Service,
  sleep,
  treeRssKiB,
  treeThreads,
} from "./_process.ts";
import type { MetricId, RowResult, RunSettings } from "./_results.ts";
import { clearTimeWait } from "./_time_wait.ts";

/** Tools and settings for {@linkcode measureRow}. */
export interface MeasureContext {
  /** Path of the loadgen binary. */
  loadgen: string;
  /** Directory for config files. */
  dir: string;
  settings: RunSettings;
  /** Number of the current round, from 1. */
  round: number;
  log: (message: string) => void;
}

/** Time a proxy gets to accept on its ports after spawning, in seconds. */
const READY_TIMEOUT_SECONDS = 30;

/**
 * Source addresses for short connections: 127.0.0.1 to 127.0.0.8 give the
 * load generator 8 times more four-tuples before TIME_WAIT runs out of them.
 */
const SOURCE_ADDRESSES = 8;

/**
 * Waits until `service` accepts on every port in `ports`.
 *
 * @throws {Error} when the service exits first or `timeoutSeconds` pass
 */
export async function waitReady(
  loadgen: string,
  service: Service,
  ports: number[],
  timeoutSeconds: number,
): Promise<void> {
  const deadline = Date.now() + timeoutSeconds * 1000;
  for (const port of ports) {
    for (;;) {
      if (service.exited) {
        throw new Error(
          `${service.name} exited with code ${service.exited.code} before ` +
            `accepting on port ${port}: "${service.stderr}"`,
        );
      }
      const wait = await runJson(
        loadgen,
        ["wait", "-p", String(port), "-d", "0.5"],
        10_000,
      );
      if (wait.ready === 1) break;
      if (Date.now() > deadline) {
        throw new Error(
          `${service.name} did not accept on port ${port} within ` +
            `${timeoutSeconds} s: "${service.stderr}"`,
        );
      }
    }
  }
}

function record(
  row: RowResult,
  round: number,
  metric: MetricId,
  value: number,
  errors = 0,
): void {
  (row.runs[metric] ??= []).push(value);
  ((row.rounds ??= {})[metric] ??= []).push(round);
  if (errors > 0) row.errors[metric] = (row.errors[metric] ?? 0) + errors;
}

/** Returns a loadgen result, or throws when it completed no operation. */
function checkOps(result: Record<string, unknown>): Record<string, unknown> {
  if (typeof result.ops !== "number" || result.ops <= 0) {
    throw new Error(
      `loadgen ${result.mode} completed nothing: ${JSON.stringify(result)}`,
    );
  }
  return result;
}

async function measureLoad(
  contender: Contender,
  row: RowResult,
  ctx: MeasureContext,
): Promise<void> {
  const { seconds, warmupSeconds, conns } = ctx.settings;
  const timeoutMs = (seconds + warmupSeconds + 20) * 1000;
  /** Arguments of a loadgen run of `mode` against the contender. */
  const loadArgs = (
    mode: string,
    runSeconds: number,
    uncountedSeconds: number,
    ...extra: string[]
  ) => [
    mode,
    "-p",
    String(contender.echoPort),
    "-c",
    String(conns),
    "-d",
    String(runSeconds),
    "-w",
    String(uncountedSeconds),
    ...extra,
  ];
  const shortConnArgs = ["-s", "16", "-S", String(SOURCE_ADDRESSES)];

  // anyport's JIT compiler needs a few seconds of load. In its first second
  // it spent 150-195 µs of CPU per short connection, and 90-105 µs from the
  // fifth second on, while HAProxy stayed at 92-132 µs. So every freshly
  // started proxy first gets short connections that are not counted.
  const warmSeconds = ctx.settings.startWarmupSeconds ?? 0;
  if (warmSeconds > 0) {
    await runJson(
      ctx.loadgen,
      loadArgs("conn", warmSeconds, 0, ...shortConnArgs),
      (warmSeconds + 20) * 1000,
    );
  }
  // Cleared after the warm-up too, so that every row's measurement starts
  // without TIME_WAIT sockets.
  const leftover = await clearTimeWait();
  if (leftover !== undefined) row.problems.push(leftover);
  const conn = checkOps(
    await runJson(
      ctx.loadgen,
      loadArgs("conn", seconds, warmupSeconds, ...shortConnArgs),
      timeoutMs,
    ),
  );
  record(
    row,
    ctx.round,
    "connPerSec",
    Number(conn.ops_per_sec),
    Number(conn.errors),
  );

  const ping = checkOps(
    await runJson(
      ctx.loadgen,
      loadArgs("pingpong", seconds, warmupSeconds, "-s", "64"),
      timeoutMs,
    ),
  );
  record(
    row,
    ctx.round,
    "msgPerSec",
    Number(ping.ops_per_sec),
    Number(ping.errors),
  );
  record(row, ctx.round, "p50Us", Number(ping.p50_us));
  record(row, ctx.round, "p99Us", Number(ping.p99_us));

  const bulk = await runBulk(contender.bulkPort, ctx);
  record(row, ctx.round, "bulkGbitPerSec", bulk);
}

/** Runs iperf3 once through `port` and returns the received Gbit/s. */
async function runBulk(port: number, ctx: MeasureContext): Promise<number> {
  const { seconds, warmupSeconds } = ctx.settings;
  const args = [
    "--client",
    "127.0.0.1",
    "--port",
    String(port),
    "--time",
    String(seconds),
    "--omit",
    String(warmupSeconds),
    "--json",
  ];
  const report = await runJson(
    "iperf3",
    args,
    (seconds + warmupSeconds + 20) * 1000,
  );
  const end = report.end as
    | { sum_received?: { bits_per_second?: number } }
    | undefined;
  const bits = end?.sum_received?.bits_per_second;
  if (typeof bits !== "number") {
    throw new Error(
      `Cannot read the iperf3 result: ${JSON.stringify(report.error ?? "")}`,
    );
  }
  return bits / 1e9;
}

/** Reads one line from the start of `stream`. */
async function readLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  for await (const chunk of stream) {
    text += decoder.decode(chunk, { stream: true });
    if (text.includes("\n")) break;
  }
  return text.split("\n")[0] ?? "";
}

async function measureIdle(
  proxy: Service,
  port: number,
  row: RowResult,
  ctx: MeasureContext,
): Promise<void> {
  const { idleConns, warmupSeconds } = ctx.settings;
  await sleep(warmupSeconds * 1000);
  const before = treeRssKiB(proxy.pid);
  const holder = new Deno.Command(ctx.loadgen, {
    args: ["idle", "-p", String(port), "-c", String(idleConns)],
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  try {
    const line = await readLine(holder.stdout);
    const idle = JSON.parse(line) as { open?: number; errors?: number };
    if (idle.open !== idleConns) {
      throw new Error(
        `Cannot hold ${idleConns} idle connections: loadgen printed ${line}`,
      );
    }
    await sleep(warmupSeconds * 1000);
    const after = treeRssKiB(proxy.pid);
    record(row, ctx.round, "rssMiB", before / 1024);
    record(row, ctx.round, "idleKiBPerConn", (after - before) / idleConns);
  } finally {
    holder.kill("SIGTERM");
    await holder.status;
  }
}

async function stopProxy(proxy: Service, row: RowResult): Promise<void> {
  const { status, killed } = await proxy.stop();
  if (killed) {
    row.problems.push(`${proxy.name} needed SIGKILL to stop`);
  } else if (!status.success && status.signal !== "SIGTERM") {
    row.problems.push(
      `${proxy.name} exited with code ${status.code} on SIGTERM: ` +
        `"${proxy.stderr}"`,
    );
  }
}

/** Starts the row's proxy, if any, and waits until it accepts. */
async function startProxy(
  contender: Contender,
  ctx: MeasureContext,
): Promise<Service | undefined> {
  const proxy = contender.start?.(ctx.dir);
  if (!proxy) return undefined;
  try {
    await waitReady(
      ctx.loadgen,
      proxy,
      [contender.echoPort, contender.bulkPort],
      READY_TIMEOUT_SECONDS,
    );
  } catch (error) {
    await proxy.stop();
    throw error;
  }
  return proxy;
}

/**
 * Runs one round on `contender` and appends its figures to `row`. A failed
 * measurement is appended to `row.problems` instead of being thrown.
 */
export async function measureRow(
  contender: Contender,
  row: RowResult,
  ctx: MeasureContext,
): Promise<void> {
  const fail = (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    row.problems.push(message);
    ctx.log(`${contender.label}: ${message}`);
  };

  try {
    const proxy = await startProxy(contender, ctx);
    try {
      await measureLoad(contender, row, ctx);
      if (proxy) row.threads = treeThreads(proxy.pid);
    } finally {
      if (proxy) await stopProxy(proxy, row);
    }
  } catch (error) {
    fail(error);
  }
  if (!contender.start) return;

  // A fresh process, so that the memory figures do not depend on the load.
  try {
    const proxy = await startProxy(contender, ctx);
    try {
      await measureIdle(proxy!, contender.echoPort, row, ctx);
    } finally {
      await stopProxy(proxy!, row);
    }
  } catch (error) {
    fail(error);
  }
}
