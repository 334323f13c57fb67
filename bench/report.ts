/**
 * Writes docs/benchmarks.md and docs/benchmarks.svg from a results file.
 *
 * Usage: deno run --allow-read --allow-write bench/report.ts [RESULTS.json]
 * (default bench/results/latest.json). bench/bench.ts calls
 * {@linkcode writeReport} at the end of each run.
 *
 * @module
 */
import { renderChart } from "./chart.ts";
import {
  checkTargets,
  CLEAR_CONFIDENCE,
  CONFIDENCE,
  formatMeasured,
} from "./targets.ts";
import {
  median,
  type Metric,
  type MetricId,
  METRICS,
  ratioToBaseline,
  type Results,
  roundRatios,
  type RowResult,
  type RunSettings,
  type StartupResult,
} from "./_results.ts";

const DOCS_DIR = new URL("../docs/", import.meta.url).pathname;
const CHART_NAME = "benchmarks.svg";

const LOAD_METRICS: readonly MetricId[] = [
  "connPerSec",
  "msgPerSec",
  "p50Us",
  "p99Us",
  "bulkGbitPerSec",
];
const MEMORY_METRICS: readonly MetricId[] = ["rssMiB", "idleKiBPerConn"];

function metric(id: MetricId): Metric {
  return METRICS.find((m) => m.id === id)!;
}

function formatNumber(value: number, digits: number): string {
  return value.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

/** Formats a median with its ratio to the baseline. */
function formatCell(
  value: number | undefined,
  ratio: number | undefined,
  digits: number,
): string {
  if (value === undefined) return "–";
  const text = formatNumber(value, digits);
  if (ratio === undefined) return text;
  return `${text} (${ratio.toFixed(2)}×)`;
}

/** Returns the ratio of two medians, or `undefined` without both. */
function medianRatio(
  values: number[] | undefined,
  bases: number[] | undefined,
): number | undefined {
  const value = median(values);
  const base = median(bases);
  if (value === undefined || base === undefined || base === 0) return undefined;
  return value / base;
}

/**
 * Returns a Markdown table. The first column is aligned left and the others
 * right, unless `textColumns` lists more columns to align left.
 */
function table(
  header: string[],
  rows: string[][],
  textColumns: readonly number[] = [],
): string[] {
  const left = (i: number) => i === 0 || textColumns.includes(i);
  return [
    `| ${header.join(" | ")} |`,
    `|${header.map((_, i) => (left(i) ? " --- " : " ---: ")).join("|")}|`,
    ...rows.map((row) => `| ${row.join(" | ")} |`),
  ];
}

function metricTable(
  results: Results,
  ids: readonly MetricId[],
  extra?: { title: string; cell: (row: RowResult) => string },
): string[] {
  const baseline = results.rows.find((row) => row.id === results.baseline);
  const header = [
    "Row",
    ...ids.map((id) => {
      const m = metric(id);
      return `${m.title} (${m.unit}, ${m.higherIsBetter ? "↑" : "↓"})`;
    }),
    ...(extra ? [extra.title] : []),
  ];
  const rows = results.rows.map((row) => [
    row.skipped ? `${row.label} (skipped)` : row.label,
    ...ids.map((id) =>
      formatCell(
        median(row.runs[id]),
        ratioToBaseline(row, baseline, id),
        metric(id).digits,
      )
    ),
    ...(extra ? [extra.cell(row)] : []),
  ]);
  return table(header, rows);
}

/**
 * Lists each row's ratio to the baseline in every round, so a reader sees
 * how far the figures moved between rounds.
 */
function roundTable(results: Results): string[] {
  const baseline = results.rows.find((row) => row.id === results.baseline);
  const rows = results.rows
    .filter((row) => row !== baseline && !row.skipped && row.rounds)
    .map((row) => [
      row.label,
      ...LOAD_METRICS.map((id) =>
        roundRatios(row, baseline, id).map((r) => r.toFixed(2)).join(", ") ||
        "–"
      ),
    ]);
  if (rows.length === 0) return [];
  return [
    results.settings.slices
      ? "## Ratios in each slice"
      : "## Ratios in each round",
    "",
    results.settings.slices
      ? "The ratio of each row to the baseline within each slice (within " +
        "each round for bulk), in order; the tables above give their median."
      : "The ratio of each row to the baseline within each round, in round " +
        "order; the tables above give their median.",
    "",
    ...table(["Row", ...LOAD_METRICS.map((id) => metric(id).title)], rows),
    "",
  ];
}

/** Lists each target of anyport with its verdict on this run. */
function targetsSection(results: Results): string[] {
  const checks = checkTargets([results]);
  if (checks.length === 0) return [];
  const percent = (CONFIDENCE * 100).toFixed(0);
  return [
    "## Targets",
    "",
    "The targets anyport is built to meet, checked on this run by " +
    "`bench/targets.ts`. Each figure is the median of its samples (the " +
    "ratios within each slice, or within each round for bulk, or the " +
    "values of each round) followed by a confidence interval of that " +
    "median and the interval's coverage. The interval runs from the j-th " +
    "smallest to the j-th largest sample, with j as large as keeps its " +
    `coverage at least ${percent}%, ` +
    "or over all samples where there are too few for that (5 " +
    "samples give 93.8%). The interval comes from the order of the samples " +
    "alone and assumes only that they are independent. *Met* means that " +
    "the whole interval meets the target, *within noise* that the interval " +
    "reaches across it (or has less than " +
    `${(CLEAR_CONFIDENCE * 100).toFixed(0)}% coverage), so that the ` +
    "verdict could change from one run to the next. " +
    "`deno run -R bench/targets.ts FILE...` pools the samples of several " +
    "results files.",
    "",
    ...table(
      ["Target", "Row", "Median (interval, coverage)", "Samples", "Verdict"],
      checks.map((c) => [
        c.target,
        c.row,
        formatMeasured(c),
        String(c.samples),
        c.verdict,
      ]),
      [1, 4],
    ),
    "",
  ];
}

function startupTable(results: Results): string[] {
  const reference = results.startup.find((s) => s.id === "listeners");
  const rows = results.startup.map((s: StartupResult) => [
    s.skipped ? `${s.label} (skipped)` : s.label,
    s.ports.toLocaleString("en-US"),
    formatCell(
      median(s.runs.startupMs),
      medianRatio(s.runs.startupMs, reference?.runs.startupMs),
      0,
    ),
    formatCell(
      median(s.runs.rssMiB),
      medianRatio(s.runs.rssMiB, reference?.runs.rssMiB),
      1,
    ),
  ]);
  return table(
    ["anyport mode", "Ports", "Start-up (ms, ↓)", "RSS (MiB, ↓)"],
    rows,
  );
}

function machineSection(results: Results): string[] {
  const m = results.machine;
  return [
    "## Machine",
    "",
    ...table(["", ""], [
      ["CPU", `${m.cpu}, ${m.cores} cores`],
      ["Kernel", `Linux ${m.kernel}`],
      ["Deno", m.deno],
      ["HAProxy", m.haproxy],
      ["nginx", m.nginx],
      ["iperf3", m.iperf3],
      ["C compiler", m.compiler],
    ]),
    "",
    `Run started ${results.startedAt} and took ` +
    `${(results.durationSeconds / 60).toFixed(1)} min: ` +
    `\`${results.command}\`.`,
    "",
  ];
}

/** Returns the method text of a run measured in slices (`bench/_round.ts`). */
function slicedMethod(s: RunSettings): string {
  return "Every proxy starts once for the run and first gets " +
    `${s.startWarmupSeconds ?? 0} s of short connections and ping-pong, ` +
    "each started and stopped several times, that are not counted, " +
    "because anyport's JIT compiler needs that much load to reach its " +
    `speed. Then, in each of ${s.rounds} rounds, the rows take turns in ` +
    `${s.slices} slices. Each slice runs ${s.seconds} s of short ` +
    `connections and ${s.seconds} s of ping-pong through one row, after ` +
    `${s.warmupSeconds} s that are not counted. Every other slice takes the ` +
    "rows in reverse order, and the baseline sits between the two anyport " +
    "rows. The " +
    "proxies not being measured are stopped (SIGSTOP), so only one uses " +
    "the CPU at a time. Short turns put every row into the same phases of " +
    "a machine whose speed changes by itself for seconds at a time. Each " +
    "figure is the median over all slices (over rounds for bulk and " +
    "memory), and each ratio is the median of the ratios within a slice " +
    `(within a round for bulk). Bulk runs ${s.bulkSeconds ?? s.seconds} s ` +
    "per row and round.";
}

/** Returns the method text of a run without slices, for older results files. */
function rowByRowMethod(s: RunSettings): string {
  return "Rows are measured in turn, with the baseline between the two " +
    "anyport rows, and the whole set is repeated " +
    `${s.rounds} times, in reverse order every other time. Each figure is ` +
    "the median over those rounds. Each ratio is the median of the ratios " +
    "within a round, so the machine getting faster or slower between " +
    "rounds cancels out. " +
    "Each load measurement runs " +
    `${s.seconds} s after a ${s.warmupSeconds} s warm-up.` +
    (s.startWarmupSeconds
      ? ` Each proxy is started afresh for each row and first gets ` +
        `${s.startWarmupSeconds} s of short connections that are not ` +
        "counted, because anyport's JIT compiler needs a few seconds of " +
        "load to reach its speed (`bench/_measure.ts`)."
      : "");
}

function methodSection(results: Results): string[] {
  const s = results.settings;
  return [
    "## Method",
    "",
    "`bench/run.sh` creates a network namespace and runs everything on its " +
    "loopback interface, one proxy at a time, against the same backends: " +
    "a single-threaded epoll echo server (`bench/echo.c`) and `iperf3 " +
    "--server`. The load generator is `bench/loadgen.c` (epoll, one " +
    "thread). " +
    (s.slices ? slicedMethod(s) : rowByRowMethod(s)),
    "",
    `- **Short connections:** ${s.conns} clients each loop over connect, ` +
    "send 16 bytes, receive them back, close. Before it, `ss -K` closes " +
    "the TIME_WAIT sockets that earlier measurements left, so every one " +
    "starts from the same state (`bench/_time_wait.ts` says why that " +
    "matters).",
    `- **Ping-pong:** ${s.conns} persistent connections each send 64 bytes ` +
    "and wait for the echo before sending again. Latency is the round " +
    "trip seen by the load generator, in 1 µs buckets.",
    "- **Bulk:** one iperf3 connection (plus its control connection), " +
    "received throughput.",
    "- **Memory:** a fresh proxy process, RSS summed over all its " +
    "processes (nginx master and worker). *RSS at rest* is taken after " +
    `start-up; then the load generator opens ${s.idleConns.toLocaleString()} ` +
    "connections, does one echo round trip on each and holds them. *RSS " +
    "per idle conn* is the growth divided by the number of connections.",
    "- **Start-up:** from spawning anyport to the moment a connect " +
    `succeeds on every one of ${s.startupPorts.toLocaleString()} ports, ` +
    "then RSS after 1 s.",
    "",
    "Every proxy forwards to targets on 127.0.0.1 with a 5 s connect " +
    "timeout, a 10 min idle timeout and no access log. HAProxy runs " +
    "`mode tcp` with `-db`; nginx runs the `stream` module with one worker. " +
    "anyport runs with `--log-level warning`. Buffer sizes are each " +
    "proxy's defaults.",
    "",
  ];
}

function limitsSection(results: Results): string[] {
  const direct = results.rows.find((row) => row.id === "direct");
  const lines = [
    "## Limits",
    "",
    `The machine has ${results.machine.cores} cores, shared by the load ` +
    "generator, the backend and the proxy, so the figures compare proxies " +
    "on this machine and are no capacity planning numbers. The *no proxy* " +
    "row is the limit of the load generator and the backend without a " +
    "proxy in between" +
    (direct?.skipped ? "." : "; every proxied row should stay below it."),
    "Default-thread HAProxy starts one thread per core, so it competes " +
    "with the load generator for the same cores.",
    "",
  ];
  const notes = [...results.problems];
  notes.push(...[...results.rows, ...results.startup].flatMap((row) => [
    ...(row.skipped ? [`${row.label}: skipped because ${row.skipped}`] : []),
    ...row.problems.map((p) => `${row.label}: ${p}`),
  ]));
  for (const row of results.rows) {
    for (const [id, count] of Object.entries(row.errors)) {
      notes.push(
        `${row.label}: ${count} failed connections in ` +
          `${metric(id as MetricId).title}`,
      );
    }
  }
  if (notes.length > 0) {
    lines.push(
      "Problems during this run:",
      "",
      ...notes.map((n) => `- ${n.replaceAll("\n", " ")}`),
      "",
    );
  }
  return lines;
}

/** Renders docs/benchmarks.md for `results`. */
export function renderReport(results: Results): string {
  const baseLabel = results.rows.find((r) => r.id === results.baseline)
    ?.label ?? results.baseline;
  const threads = (row: RowResult) =>
    row.threads === undefined ? "–" : String(row.threads);
  return [
    "# Benchmarks",
    "",
    "<!-- Generated by bench/report.ts from bench/results/; " +
    "run `deno task bench` to update. -->",
    "",
    "anyport against HAProxy and nginx as TCP proxies on one machine, all " +
    "measured in one run so that the ratios hold even when the machine is " +
    `noisy. Each cell is a median followed by its ratio to *${baseLabel}* ` +
    "(the median of the ratios within each slice or round). " +
    "↑ marks figures where higher is better and ↓ where lower is better.",
    "",
    `![Benchmark chart: every figure relative to ${baseLabel}](${CHART_NAME})`,
    "",
    ...targetsSection(results),
    "## Throughput and latency",
    "",
    ...metricTable(results, LOAD_METRICS),
    "",
    ...roundTable(results),
    "## Memory",
    "",
    ...metricTable(results, MEMORY_METRICS, {
      title: "Threads",
      cell: threads,
    }),
    "",
    ...(results.startup.length > 0
      ? [
        "## Start-up with many ports",
        "",
        "anyport only; ratios are to per-port listeners with " +
        `${results.settings.startupPorts.toLocaleString()} ports. The ` +
        "1-port row is the baseline, because anyport rejects a config " +
        "without apps. Start-up is timed from the spawn of `deno run` " +
        `until every ${results.settings.startupProbeStep}th port and the ` +
        "last one accept a connection.",
        "",
        ...startupTable(results),
        "",
      ]
      : []),
    ...methodSection(results),
    ...machineSection(results),
    ...limitsSection(results),
  ].join("\n");
}

/**
 * Writes docs/benchmarks.md and its chart for `results`.
 *
 * @returns the paths written
 */
export function writeReport(results: Results): string[] {
  Deno.mkdirSync(DOCS_DIR, { recursive: true });
  const markdown = `${DOCS_DIR}benchmarks.md`;
  const chart = `${DOCS_DIR}${CHART_NAME}`;
  Deno.writeTextFileSync(markdown, renderReport(results));
  Deno.writeTextFileSync(chart, renderChart(results));
  return [markdown, chart];
}

if (import.meta.main) {
  const path = Deno.args[0] ??
    new URL("results/latest.json", import.meta.url).pathname;
  const results = JSON.parse(Deno.readTextFileSync(path)) as Results;
  for (const written of writeReport(results)) {
    Deno.stdout.writeSync(new TextEncoder().encode(`wrote ${written}\n`));
  }
}
