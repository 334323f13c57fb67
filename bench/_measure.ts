/**
 * Measurements on one row: a slice of short connections and ping-pong, bulk
 * throughput, and memory on a fresh process.
 */
import type { Contender } from "./_contenders.ts";
import { runJson, type Service, sleep, treeRssKiB } from "./_process.ts";
import type { MetricId, RowResult, RunSettings } from "./_results.ts";
import { clearTimeWait } from "./_time_wait.ts";

/** Tools and settings for the measurements of a round. */
export interface MeasureContext {
  /** Path of the loadgen binary. */
  loadgen: string;
  /** Directory for config files. */
  dir: string;
  settings: RunSettings;
  /** Number of the current round, from 1, or 0 during the warm-up. */
  round: number;
  log: (message: string) => void;
}

/** Time a proxy gets to accept on its ports after spawning, in seconds. */
const READY_TIMEOUT_SECONDS = 30;

/** Time given to RSS to settle before and after idle connections open. */
const SETTLE_MS = 1_000;

/** Seconds at the start of a bulk run that iperf3 does not count. */
const BULK_OMIT_SECONDS = 1;

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

/**
 * Appends `value` to `row` with the number of its round, or of its slice
 * for figures measured in slices, so that ratios pair it with the
 * baseline's value of the same number.
 */
function record(
  row: RowResult,
  sample: number,
  metric: MetricId,
  value: number,
  errors = 0,
): void {
  (row.runs[metric] ??= []).push(value);
  ((row.rounds ??= {})[metric] ??= []).push(sample);
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

/** Arguments of a loadgen run of `mode` against `contender`'s echo port. */
function loadArgs(
  contender: Contender,
  ctx: MeasureContext,
  mode: string,
  runSeconds: number,
  uncountedSeconds: number,
  ...extra: string[]
): string[] {
  return [
    mode,
    "-p",
    String(contender.echoPort),
    "-c",
    String(ctx.settings.conns),
    "-d",
    String(runSeconds),
    "-w",
    String(uncountedSeconds),
    ...extra,
  ];
}

const SHORT_CONN_ARGS = ["-s", "16", "-S", String(SOURCE_ADDRESSES)];

/** Times that the warm-up starts and stops each kind of load. */
const WARM_UP_CYCLES = 4;

/**
 * Runs short connections and ping-pong through a freshly started proxy
 * without counting them, then clears the TIME_WAIT sockets they left.
 *
 * anyport's JIT compiler needs several seconds of load. In its first second
 * it spent 150-195 µs of CPU per short connection, and 90-105 µs from the
 * fifth second on, while HAProxy stayed at 92-132 µs. The first time a
 * load ends, with connections cut by the exiting load generator, V8 drops
 * optimized code (`--trace-deopt`) and its scavenges keep 30-60% of the
 * young generation for about a second (`--trace-gc`). Later ends do not.
 * So every proxy gets the same uncounted load, started and stopped
 * {@linkcode WARM_UP_CYCLES} times, before its first measurement.
 */
export async function warmUp(
  contender: Contender,
  row: RowResult,
  ctx: MeasureContext,
): Promise<void> {
  const warmSeconds = ctx.settings.startWarmupSeconds ?? 0;
  // Three quarters of each cycle are short connections.
  const cycleSeconds = warmSeconds / WARM_UP_CYCLES;
  const connSeconds = cycleSeconds * 0.75;
  const pingSeconds = cycleSeconds - connSeconds;
  for (let cycle = 0; warmSeconds > 0 && cycle < WARM_UP_CYCLES; cycle++) {
    await runJson(
      ctx.loadgen,
      loadArgs(contender, ctx, "conn", connSeconds, 0, ...SHORT_CONN_ARGS),
      (connSeconds + 20) * 1000,
    );
    await runJson(
      ctx.loadgen,
      loadArgs(contender, ctx, "pingpong", pingSeconds, 0, "-s", "64"),
      (pingSeconds + 20) * 1000,
    );
  }
  const leftover = await clearTimeWait();
  if (leftover !== undefined) row.problems.push(leftover);
}

/**
 * Measures one slice: short connections, then ping-pong, each for
 * `settings.seconds` after `settings.warmupSeconds` that are not counted.
 * The figures go to `row` under the number `slice`.
 */
export async function measureSlice(
  contender: Contender,
  row: RowResult,
  ctx: MeasureContext,
  slice: number,
): Promise<void> {
  const { seconds, warmupSeconds } = ctx.settings;
  const timeoutMs = (seconds + warmupSeconds + 20) * 1000;
  // Every slice of short connections starts without TIME_WAIT sockets, so
  // that it does not depend on the slices before it.
  const leftover = await clearTimeWait();
  if (leftover !== undefined) row.problems.push(leftover);
  const conn = checkOps(
    await runJson(
      ctx.loadgen,
      loadArgs(
        contender,
        ctx,
        "conn",
        seconds,
        warmupSeconds,
        ...SHORT_CONN_ARGS,
      ),
      timeoutMs,
    ),
  );
  record(
    row,
    slice,
    "connPerSec",
    Number(conn.ops_per_sec),
    Number(conn.errors),
  );

  const ping = checkOps(
    await runJson(
      ctx.loadgen,
      loadArgs(contender, ctx, "pingpong", seconds, warmupSeconds, "-s", "64"),
      timeoutMs,
    ),
  );
  record(
    row,
    slice,
    "msgPerSec",
    Number(ping.ops_per_sec),
    Number(ping.errors),
  );
  record(row, slice, "p50Us", Number(ping.p50_us));
  record(row, slice, "p99Us", Number(ping.p99_us));
}

/** Runs iperf3 once through `contender` and records the received Gbit/s. */
export async function measureBulk(
  contender: Contender,
  row: RowResult,
  ctx: MeasureContext,
): Promise<void> {
  const seconds = ctx.settings.bulkSeconds ?? ctx.settings.seconds;
  const args = [
    "--client",
    "127.0.0.1",
    "--port",
    String(contender.bulkPort),
    "--time",
    String(seconds),
    "--omit",
    String(BULK_OMIT_SECONDS),
    "--json",
  ];
  const report = await runJson(
    "iperf3",
    args,
    (seconds + BULK_OMIT_SECONDS + 20) * 1000,
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
  record(row, ctx.round, "bulkGbitPerSec", bits / 1e9);
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
  const { idleConns } = ctx.settings;
  await sleep(SETTLE_MS);
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
    await sleep(SETTLE_MS);
    const after = treeRssKiB(proxy.pid);
    record(row, ctx.round, "rssMiB", before / 1024);
    record(row, ctx.round, "idleKiBPerConn", (after - before) / idleConns);
  } finally {
    holder.kill("SIGTERM");
    await holder.status;
  }
}

/** Stops `proxy`, noting in `row` an exit that was not clean. */
export async function stopProxy(
  proxy: Service,
  row: RowResult,
): Promise<void> {
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
export async function startProxy(
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
 * Measures memory on a fresh process of `contender`'s proxy, so that the
 * figures do not depend on earlier load, and appends them to `row`.
 */
export async function measureMemory(
  contender: Contender,
  row: RowResult,
  ctx: MeasureContext,
): Promise<void> {
  const proxy = await startProxy(contender, ctx);
  if (!proxy) return;
  try {
    await measureIdle(proxy, contender.echoPort, row, ctx);
  } finally {
    await stopProxy(proxy, row);
  }
}
