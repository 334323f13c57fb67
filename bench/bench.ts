/**
 * Benchmark driver: measures every row of {@linkcode CONTENDERS} and the
 * start-up of anyport with many ports, then writes bench/results/*.json and
 * docs/benchmarks.md.
 *
 * bench/run.sh runs this inside a fresh network namespace after building
 * the C tools; running it directly would load the host's loopback.
 *
 * Environment: BENCH_SECONDS (length of a slice, default 2), BENCH_SLICES
 * (slices per round, default 4), BENCH_ROUNDS (default 5), BENCH_ONLY
 * (comma-separated row ids, for trying out the harness).
 *
 * @module
 */
import {
  ANYPORT_MAIN,
  anyportConfig,
  BASELINE_ID,
  BULK_BACKEND_PORT,
  type Contender,
  CONTENDERS,
  ECHO_BACKEND_PORT,
  ECHO_PORT,
  MEASURE_ORDER,
  startAnyport,
} from "./_contenders.ts";
import { runJson, Service, sleep, treeRssKiB } from "./_process.ts";
import { waitReady } from "./_measure.ts";
import { measureMemoryRound, RunningRows } from "./_round.ts";
import { readMachineInfo } from "./_machine.ts";
import type {
  Results,
  RowResult,
  RunSettings,
  StartupResult,
} from "./_results.ts";
import { writeReport } from "./report.ts";
import { checkTargets, describeChecks } from "./targets.ts";

const BENCH_DIR = new URL(".", import.meta.url).pathname;
const LOADGEN = `${BENCH_DIR}build/loadgen`;
const ECHO = `${BENCH_DIR}build/echo`;
const RESULTS_DIR = `${BENCH_DIR}results`;

/** First port of the start-up measurement's range. */
const STARTUP_FIRST_PORT = 20_000;
/** Time given to RSS to settle after start-up, in ms. */
const STARTUP_SETTLE_MS = 1_000;
/** Time anyport gets to accept on every port, in seconds. */
const STARTUP_TIMEOUT_SECONDS = 60;

function readSettings(): RunSettings {
  const number = (name: string, fallback: number, max: number) => {
    const text = Deno.env.get(name);
    if (text === undefined || text === "") return fallback;
    const value = Number(text);
    if (!Number.isFinite(value) || value <= 0 || value > max) {
      throw new RangeError(
        `Cannot use ${name}="${text}": expected a number in (0, ${max}]`,
      );
    }
    return value;
  };
  return {
    seconds: number("BENCH_SECONDS", 2, 60),
    warmupSeconds: 0.5,
    startWarmupSeconds: 20,
    slices: Math.round(number("BENCH_SLICES", 4, 20)),
    bulkSeconds: 5,
    rounds: Math.round(number("BENCH_ROUNDS", 5, 9)),
    conns: 32,
    idleConns: 5_000,
    startupPorts: 10_000,
    startupProbeStep: 100,
  };
}

function selectedContenders(): Contender[] {
  const only = Deno.env.get("BENCH_ONLY");
  if (!only) return [...CONTENDERS];
  const ids = only.split(",").map((id) => id.trim());
  for (const id of ids) {
    if (!CONTENDERS.some((c) => c.id === id)) {
      throw new RangeError(
        `Cannot select row "${id}": known rows are ` +
          CONTENDERS.map((c) => c.id).join(", "),
      );
    }
  }
  return CONTENDERS.filter((c) => ids.includes(c.id));
}

function anyportMissing(): string | undefined {
  try {
    Deno.statSync(ANYPORT_MAIN);
    return undefined;
  } catch {
    return `${ANYPORT_MAIN} does not exist yet`;
  }
}

/** The echo and iperf3 servers that every row forwards to. */
class Backends {
  #echo: Service | undefined;
  #iperf: Service | undefined;
  /** Backends that exited during the run, with their exit status. */
  readonly problems: string[] = [];

  /** Starts the backends that are not running, noting those that exited. */
  async ensure(): Promise<void> {
    for (const service of [this.#echo, this.#iperf]) {
      if (!service?.exited) continue;
      const message = `${service.name} backend exited during the run ` +
        `(code ${service.exited.code}, signal ${service.exited.signal}) ` +
        `and was restarted: "${service.stderr}"`;
      this.problems.push(message);
      progress(message);
    }
    if (!this.#echo || this.#echo.exited) {
      this.#echo = new Service("echo", ECHO, [String(ECHO_BACKEND_PORT)]);
      await waitReady(LOADGEN, this.#echo, [ECHO_BACKEND_PORT], 10);
    }
    if (!this.#iperf || this.#iperf.exited) {
      this.#iperf = new Service("iperf3", "iperf3", [
        "--server",
        "--port",
        String(BULK_BACKEND_PORT),
      ]);
      await waitReady(LOADGEN, this.#iperf, [BULK_BACKEND_PORT], 10);
    }
  }

  async stop(): Promise<void> {
    await this.#echo?.stop();
    await this.#iperf?.stop();
  }
}

/** Logs progress to stderr, so stdout stays free for results. */
function progress(message: string): void {
  const time = new Date().toISOString().slice(11, 19);
  Deno.stderr.writeSync(new TextEncoder().encode(`[${time}] ${message}\n`));
}

/**
 * Returns `contenders` with their indices, in {@linkcode MEASURE_ORDER};
 * rows that it does not name come last.
 */
function measureOrder(contenders: Contender[]): [number, Contender][] {
  const rank = (id: string) => {
    const index = MEASURE_ORDER.indexOf(id);
    return index < 0 ? MEASURE_ORDER.length : index;
  };
  return [...contenders.entries()].sort(([, a], [, b]) =>
    rank(a.id) - rank(b.id)
  );
}

/** Marks the rows that got no figure at all as skipped, with the reason. */
function skipRowsWithoutFigures(rows: RowResult[]): void {
  for (const row of rows) {
    if (row.skipped || Object.keys(row.runs).length > 0) continue;
    row.skipped = row.problems.at(-1) ?? "no figures";
    progress(`skipping ${row.label}: ${row.skipped}`);
  }
}

async function measureRows(
  contenders: Contender[],
  settings: RunSettings,
  dir: string,
  backends: Backends,
): Promise<RowResult[]> {
  const missing = anyportMissing();
  const rows: RowResult[] = contenders.map((c) => ({
    id: c.id,
    label: c.label,
    ...(missing && c.id.startsWith("anyport") ? { skipped: missing } : {}),
    runs: {},
    errors: {},
    problems: [],
  }));
  const order = measureOrder(contenders).map(([i, contender]) => ({
    contender,
    row: rows[i]!,
  }));
  const context = { loadgen: LOADGEN, dir, settings, log: progress };
  const ensureBackends = () => backends.ensure();
  const running = await RunningRows.start(
    order,
    { ...context, round: 0 },
    ensureBackends,
  );
  try {
    for (let round = 1; round <= settings.rounds; round++) {
      // Every other round takes the rows in reverse order, so that a machine
      // that slows down or speeds up during the run favours no row.
      await running.measureRound({ ...context, round }, round % 2 === 0);
      if (round === 1) skipRowsWithoutFigures(rows);
    }
  } finally {
    await running.stop();
  }
  for (let round = 1; round <= settings.rounds; round++) {
    await measureMemoryRound(order, { ...context, round }, ensureBackends);
  }
  return rows;
}

/**
 * Probes `ports` ports from `first`: every `step`-th one and the last, with
 * at most `window` connects in flight. Each probe is a connection that the
 * proxy accepts and dials through, so a timed probe of every port would
 * mostly measure the proxy's connection rate.
 */
function probe(
  proxy: Service,
  first: number,
  ports: number,
  step: number,
  window: number,
): Promise<Record<string, unknown>> {
  const args = [
    "wait",
    "-p",
    String(first),
    "-P",
    String(first + ports - 1),
    "-i",
    String(step),
    "-c",
    String(window),
    "-d",
    String(STARTUP_TIMEOUT_SECONDS),
  ];
  const timeoutMs = (STARTUP_TIMEOUT_SECONDS + 10) * 1000;
  return runJson(LOADGEN, args, timeoutMs, proxy.exitSignal).catch(
    (error) => {
      if (!proxy.exited) throw error;
      throw new Error(
        `anyport exited with code ${proxy.exited.code} before accepting on ` +
          `${ports} ports: "${proxy.stderr}"`,
        { cause: error },
      );
    },
  );
}

async function measureStartupOnce(
  result: StartupResult,
  bpf: boolean,
  dir: string,
  settings: RunSettings,
  round: number,
): Promise<void> {
  // The first round also checks that every port accepts.
  const checkAll = round === 1;
  const ports = result.ports;
  const first = ports === 1 ? ECHO_PORT : STARTUP_FIRST_PORT;
  const path = `${dir}/startup-${result.id}.json`;
  const portList = ports === 1 ? [first] : [`${first}-${first + ports - 1}`];
  Deno.writeTextFileSync(
    path,
    anyportConfig({
      apps: [{ name: "echo", ports: portList, target: ECHO_BACKEND_PORT }],
      bpf,
    }),
  );
  await using proxy = startAnyport(path, bpf);

  const step = settings.startupProbeStep;
  const sample = await probe(proxy, first, ports, step, 8);
  const startupMs = Number(sample.done_epoch_ms) - proxy.spawnedAt;
  await sleep(STARTUP_SETTLE_MS);
  const rssMiB = treeRssKiB(proxy.pid) / 1024;

  if (sample.ready !== sample.ports) {
    throw new Error(
      `anyport accepted on ${sample.ready} of ${sample.ports} sampled ports ` +
        `within ${STARTUP_TIMEOUT_SECONDS} s: "${proxy.stderr}"`,
    );
  }
  // Untimed check that every port accepts, not only the sampled ones. It
  // takes seconds in BPF mode, where all probes queue on one socket.
  if (checkAll) {
    const all = await probe(proxy, first, ports, 1, 8);
    if (all.ready !== ports) {
      throw new Error(
        `anyport accepted on ${all.ready} of ${ports} ports within ` +
          `${STARTUP_TIMEOUT_SECONDS} s: "${proxy.stderr}"`,
      );
    }
  }
  (result.runs.startupMs ??= []).push(startupMs);
  (result.runs.rssMiB ??= []).push(rssMiB);
  (result.rounds ??= []).push(round);
  progress(`${result.label}: ${startupMs} ms, ${rssMiB.toFixed(1)} MiB`);
}

/**
 * Returns the message of `error`. A failure in `await using` cleanup wraps
 * the first error, whose message would otherwise be lost.
 */
function describeError(error: unknown): string {
  if (error instanceof SuppressedError) {
    return `${describeError(error.suppressed)} (then, on cleanup: ` +
      `${describeError(error.error)})`;
  }
  return error instanceof Error ? error.message : String(error);
}

async function measureStartup(
  settings: RunSettings,
  dir: string,
  backends: Backends,
): Promise<StartupResult[]> {
  const missing = anyportMissing();
  const modes = [
    { id: "listeners-1", label: "per-port listeners, 1 port", bpf: false },
    { id: "listeners", label: "per-port listeners", bpf: false },
    { id: "bpf", label: "BPF mode", bpf: true },
  ];
  const results: StartupResult[] = modes.map((mode) => ({
    id: mode.id,
    label: mode.label,
    ports: mode.id === "listeners-1" ? 1 : settings.startupPorts,
    ...(missing ? { skipped: missing } : {}),
    runs: {},
    problems: [],
  }));
  if (missing) return results;
  for (let round = 1; round <= settings.rounds; round++) {
    for (const [i, mode] of modes.entries()) {
      const result = results[i]!;
      if (result.skipped) continue;
      progress(`start-up round ${round}/${settings.rounds}: ${mode.label}`);
      try {
        await backends.ensure();
        await measureStartupOnce(result, mode.bpf, dir, settings, round);
      } catch (error) {
        const message = describeError(error);
        result.problems.push(message);
        progress(message);
        if (round === 1) result.skipped = message;
      }
    }
  }
  return results;
}

function writeResults(results: Results): string {
  Deno.mkdirSync(RESULTS_DIR, { recursive: true });
  const name = results.startedAt.replaceAll(":", "-").slice(0, 19);
  const path = `${RESULTS_DIR}/${name}.json`;
  const text = JSON.stringify(results, null, 2) + "\n";
  Deno.writeTextFileSync(path, text);
  Deno.writeTextFileSync(`${RESULTS_DIR}/latest.json`, text);
  return path;
}

async function main(): Promise<void> {
  const settings = readSettings();
  const contenders = selectedContenders();
  const started = new Date();
  const dir = Deno.makeTempDirSync({ prefix: "anyport-bench-" });

  const backends = new Backends();
  await backends.ensure();
  let rows: RowResult[];
  let startup: StartupResult[];
  try {
    rows = await measureRows(contenders, settings, dir, backends);
    startup = contenders.some((c) => c.id.startsWith("anyport"))
      ? await measureStartup(settings, dir, backends)
      : [];
  } finally {
    await backends.stop();
  }

  const results: Results = {
    version: 1,
    startedAt: started.toISOString(),
    durationSeconds: Math.round((Date.now() - started.getTime()) / 1000),
    command: Deno.env.get("BENCH_COMMAND") ?? "deno task bench",
    machine: await readMachineInfo(),
    settings,
    baseline: BASELINE_ID,
    rows,
    startup,
    problems: backends.problems,
  };

  const path = writeResults(results);
  progress(`wrote ${path}`);
  const written = writeReport(results);
  progress(`wrote ${written.join(", ")}`);
  for (const line of describeChecks(checkTargets([results]))) progress(line);
  Deno.removeSync(dir, { recursive: true });
}

if (import.meta.main) {
  await main();
}
