/**
 * The speed and memory targets that anyport is built to meet, checked
 * against one or more benchmark results files.
 *
 * Each check takes samples, not a single figure: the ratios to the baseline
 * within each slice (each round for bulk), or the value of each round. It
 * reports their median, as docs/benchmarks.md does, and a distribution-free
 * confidence interval of that median, so that a reader can tell a clear
 * result from one inside the spread of the machine.
 *
 * Usage: deno run --allow-read bench/targets.ts [RESULTS.json ...]
 * (default bench/results/latest.json). With several files, the samples of
 * all of them are pooled, and a run given twice (same start time) counts
 * once.
 *
 * @module
 */
import {
  median,
  type MetricId,
  METRICS,
  type Results,
  roundRatios,
  type RowResult,
  type StartupResult,
} from "./_results.ts";

/** Minimum coverage that the interval of a check aims for. */
export const CONFIDENCE = 0.95;

/**
 * Minimum coverage at which a verdict may be clear ("met" or "missed"). With
 * fewer samples than that takes (5 give 93.8%, 4 give 87.5%), the median
 * decides and the verdict is "within noise".
 */
export const CLEAR_CONFIDENCE = 0.9;

/** Outcome of one check. */
export type Verdict =
  | "met"
  | "met within noise"
  | "missed within noise"
  | "missed"
  | "not measured";

/** One target checked for one anyport row. */
export interface TargetCheck {
  /** The target, e.g. "short connections ≥ 1.00× of HAProxy, nbthread 1". */
  target: string;
  /** Label of the anyport row or start-up mode checked. */
  row: string;
  /** Unit of `median` and `interval`: "×" for ratios. */
  unit: string;
  /** Median of the samples. */
  median?: number;
  /** Confidence interval of the median, lowest first. */
  interval?: [number, number];
  /** Coverage of `interval`, below {@linkcode CONFIDENCE} with few samples. */
  confidence?: number;
  /** Number of samples. */
  samples: number;
  verdict: Verdict;
}

/** A bound that a figure must meet, and how to word it. */
interface Target {
  /** Words for the figure, e.g. "short connections". */
  figure: string;
  /** The bound, in `unit`. */
  bound: number;
  unit: string;
  /** True when the figure must be at least `bound`, false for at most. */
  atLeast: boolean;
  /** True when the figure must not equal `bound` either. */
  strict?: boolean;
  /** Digits shown after the decimal point. */
  digits: number;
  /** Words after the bound, e.g. "of HAProxy, nbthread 1". */
  suffix?: string;
}

/** Figures that must be at least as good as the baseline's, as ratios. */
const RATIO_TARGETS: readonly { metric: MetricId; figure: string }[] = [
  { metric: "connPerSec", figure: "short connections" },
  { metric: "msgPerSec", figure: "ping-pong messages" },
  { metric: "p99Us", figure: "ping-pong p99" },
  { metric: "bulkGbitPerSec", figure: "bulk throughput" },
];

/** Maximum RSS per idle proxied connection, in KiB. */
const IDLE_KIB_BOUND = 10;
/** Upper bound, exclusive, of BPF mode's start-up time with many ports, in ms. */
const STARTUP_MS_BOUND = 1000;
/** Upper bound, exclusive, of the RSS that many ports add in BPF mode: 20 MB, in MiB. */
const STARTUP_RSS_MIB_BOUND = 20e6 / 2 ** 20;

/**
 * Returns P(X ≤ k) for X binomially distributed with `n` trials and
 * probability 1/2. Terms are computed in log space, because 2^-n underflows
 * to 0 from n = 1075.
 */
function binomialCdfHalf(k: number, n: number): number {
  let logTerm = -n * Math.LN2;
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    sum += Math.exp(logTerm);
    logTerm += Math.log((n - i) / (i + 1));
  }
  return Math.min(sum, 1);
}

/**
 * Returns the order-statistic confidence interval of the median of
 * `samples`: [x(j), x(n+1-j)] with the largest j whose coverage is at least
 * {@linkcode CONFIDENCE}, or [min, max] with its lower coverage when there
 * are too few samples for that. It assumes only that the samples are
 * independent draws from one distribution.
 */
export function medianInterval(
  samples: readonly number[],
): { interval: [number, number]; confidence: number } | undefined {
  const n = samples.length;
  if (n === 0) return undefined;
  const sorted = [...samples].sort((a, b) => a - b);
  // Coverage of [x(j), x(n+1-j)] is 1 - 2 P(X ≤ j-1), X ~ Bin(n, 1/2).
  let j = 1;
  while (j + 1 <= (n + 1) / 2) {
    const coverage = 1 - 2 * binomialCdfHalf(j, n);
    if (coverage < CONFIDENCE) break;
    j++;
  }
  const confidence = 1 - 2 * binomialCdfHalf(j - 1, n);
  return { interval: [sorted[j - 1]!, sorted[n - j]!], confidence };
}

/** Returns whether `value` meets `target`. */
function meets(target: Target, value: number): boolean {
  if (value === target.bound) return !target.strict;
  return target.atLeast ? value > target.bound : value < target.bound;
}

/** Returns the verdict for `target` on a median and its interval. */
function judge(
  target: Target,
  middle: number | undefined,
  found: ReturnType<typeof medianInterval>,
): Verdict {
  if (middle === undefined || found === undefined) return "not measured";
  const [low, high] = found.interval;
  const worst = target.atLeast ? low : high;
  const best = target.atLeast ? high : low;
  const clear = found.confidence >= CLEAR_CONFIDENCE;
  if (meets(target, middle)) {
    return clear && meets(target, worst) ? "met" : "met within noise";
  }
  return clear && !meets(target, best) ? "missed" : "missed within noise";
}

function check(
  target: Target,
  row: string,
  samples: readonly number[],
): TargetCheck {
  const relation = target.strict
    ? (target.atLeast ? ">" : "<")
    : (target.atLeast ? "≥" : "≤");
  const bound = target.bound.toFixed(target.digits) +
    (target.unit === "×" ? "×" : ` ${target.unit}`);
  const suffix = target.suffix ? ` ${target.suffix}` : "";
  const found = medianInterval(samples);
  const middle = median(samples);
  return {
    target: `${target.figure} ${relation} ${bound}${suffix}`,
    row,
    unit: target.unit,
    ...(middle === undefined ? {} : { median: middle }),
    ...(found ? found : {}),
    samples: samples.length,
    verdict: judge(target, middle, found),
  };
}

/** Returns the finite numbers of `values`, so NaN (null in a results file) drops out. */
function finite(values: readonly (number | null)[] | undefined): number[] {
  return (values ?? []).filter((v): v is number => Number.isFinite(v));
}

/**
 * Returns `runs` without repeats of a run, such as bench/results/latest.json
 * beside the file of the same run.
 */
export function distinctRuns(runs: readonly Results[]): Results[] {
  const seen = new Set<string>();
  return runs.filter((results) => {
    if (seen.has(results.startedAt)) return false;
    seen.add(results.startedAt);
    return true;
  });
}

/**
 * Returns the ids and labels of the anyport rows of all `runs`, in the order
 * they first appear. A row that is skipped in every run is kept, so that its
 * checks report "not measured" instead of disappearing.
 */
function anyportRows(runs: readonly Results[]): Map<string, string> {
  const rows = new Map<string, string>();
  for (const row of runs.flatMap((results) => results.rows)) {
    if (row.id.startsWith("anyport") && !rows.has(row.id)) {
      rows.set(row.id, row.label);
    }
  }
  return rows;
}

/** Returns the row `rowId` of `results`, unless it is missing or skipped. */
function measuredRow(results: Results, rowId: string): RowResult | undefined {
  const row = results.rows.find((r) => r.id === rowId);
  return row?.skipped ? undefined : row;
}

/** Returns the ratio samples of `rowId` for `metric`, pooled over `runs`. */
function pooledRatios(
  runs: readonly Results[],
  rowId: string,
  metric: MetricId,
): number[] {
  return runs.flatMap((results) => {
    const row = measuredRow(results, rowId);
    const baseline = results.rows.find((r) => r.id === results.baseline);
    return row ? roundRatios(row, baseline, metric) : [];
  });
}

/** Returns the values of `rowId` for `metric`, pooled over `runs`. */
function pooledValues(
  runs: readonly Results[],
  rowId: string,
  metric: MetricId,
): number[] {
  return runs.flatMap((results) =>
    finite(measuredRow(results, rowId)?.runs[metric])
  );
}

function startupOf(results: Results, id: string): StartupResult | undefined {
  const found = results.startup.find((s) => s.id === id);
  return found?.skipped ? undefined : found;
}

/**
 * Returns the RSS that many ports add in BPF mode in each round: BPF mode's
 * RSS minus that of per-port listeners with 1 port in the same round.
 * anyport rejects a config without apps, so one port stands for an empty
 * config, and the difference also counts BPF mode's own fixed cost.
 */
function addedRss(results: Results): number[] {
  const bpf = startupOf(results, "bpf");
  const onePort = startupOf(results, "listeners-1");
  if (!bpf || !onePort) return [];
  const bpfRss = bpf.runs.rssMiB ?? [];
  const onePortRss = onePort.runs.rssMiB ?? [];
  const differences: number[] = [];
  if (bpf.rounds && onePort.rounds) {
    for (const [i, round] of bpf.rounds.entries()) {
      const j = onePort.rounds.indexOf(round);
      if (j >= 0) differences.push(bpfRss[i]! - onePortRss[j]!);
    }
  } else if (bpfRss.length === onePortRss.length) {
    // Older results files have no round numbers. Equal lengths mean that
    // no round failed, so the lists pair up by position.
    differences.push(...bpfRss.map((rss, i) => rss - onePortRss[i]!));
  }
  return finite(differences);
}

/**
 * Checks every target against `runs`, pooling their samples. The runs must
 * come from the same benchmark (the same row ids and baseline).
 */
export function checkTargets(runs: readonly Results[]): TargetCheck[] {
  const unique = distinctRuns(runs);
  const first = unique[0];
  if (!first) return [];
  const baseLabel = first.rows.find((r) => r.id === first.baseline)?.label ??
    first.baseline;
  const checks: TargetCheck[] = [];
  for (const [id, label] of anyportRows(unique)) {
    for (const { metric, figure } of RATIO_TARGETS) {
      const higherIsBetter = METRICS.find((m) => m.id === metric)!
        .higherIsBetter;
      const target = {
        figure,
        bound: 1,
        unit: "×",
        atLeast: higherIsBetter,
        digits: 2,
        suffix: `of ${baseLabel}`,
      };
      checks.push(check(target, label, pooledRatios(unique, id, metric)));
    }
    checks.push(check(
      {
        figure: "RSS per idle connection",
        bound: IDLE_KIB_BOUND,
        unit: "KiB",
        atLeast: false,
        digits: 0,
      },
      label,
      pooledValues(unique, id, "idleKiBPerConn"),
    ));
  }
  const bpf = unique.flatMap((results) => results.startup)
    .find((s) => s.id === "bpf");
  if (bpf) {
    const ports = bpf.ports.toLocaleString("en-US");
    checks.push(check(
      {
        figure: `start-up with ${ports} ports`,
        bound: STARTUP_MS_BOUND,
        unit: "ms",
        atLeast: false,
        strict: true,
        digits: 0,
      },
      bpf.label,
      unique.flatMap((results) =>
        finite(startupOf(results, "bpf")?.runs.startupMs)
      ),
    ));
    checks.push(check(
      {
        figure: `RSS added by ${ports} ports (20 MB)`,
        bound: STARTUP_RSS_MIB_BOUND,
        unit: "MiB",
        atLeast: false,
        strict: true,
        digits: 1,
      },
      bpf.label,
      unique.flatMap(addedRss),
    ));
  }
  return checks;
}

/** Formats a number of `unit` for a report line. */
export function formatFigure(value: number, unit: string): string {
  if (unit === "×") return `${value.toFixed(3)}×`;
  if (unit === "ms") return `${value.toFixed(0)} ms`;
  return `${value.toFixed(1)} ${unit}`;
}

/**
 * Formats the median of `check` with its interval and the interval's
 * coverage, e.g. "1.023× (0.985× to 1.100×, 95.9%)".
 */
export function formatMeasured(check: TargetCheck): string {
  if (check.median === undefined) return "–";
  const middle = formatFigure(check.median, check.unit);
  if (!check.interval || check.confidence === undefined || check.samples < 2) {
    return middle;
  }
  const [low, high] = check.interval.map((v) => formatFigure(v, check.unit));
  const percent = (check.confidence * 100).toFixed(1);
  return `${middle} (${low} to ${high}, ${percent}%)`;
}

/** Returns one line of text per check, its verdict first. */
export function describeChecks(checks: readonly TargetCheck[]): string[] {
  return checks.map((c) =>
    `${c.verdict.padEnd(19)} ${c.row}: ${c.target}: ${formatMeasured(c)}, ` +
    `${c.samples} samples`
  );
}

/**
 * Returns a warning for each of `runs` that adds no samples to the ratio
 * targets, because it comes from before slices were numbered.
 */
export function unpairedRuns(
  runs: readonly Results[],
  paths: readonly string[],
): string[] {
  return runs.flatMap((results, i) => {
    const numbered = results.rows.some((row) =>
      row.id.startsWith("anyport") && row.rounds !== undefined
    );
    return numbered ? [] : [
      `${paths[i]}: no slice or round numbers (an older results file), so ` +
      "its ratios are left out",
    ];
  });
}

if (import.meta.main) {
  const paths = Deno.args.length > 0
    ? Deno.args
    : [new URL("results/latest.json", import.meta.url).pathname];
  const runs = paths.map((path) =>
    JSON.parse(Deno.readTextFileSync(path)) as Results
  );
  const unique = distinctRuns(runs);
  const lines = [
    ...unpairedRuns(runs, paths).map((warning) => `warning: ${warning}`),
    unique.length > 1
      ? `Targets, samples pooled over ${unique.length} runs:`
      : "Targets:",
    ...(unique.length < runs.length
      ? [`(${runs.length - unique.length} repeated run(s) left out)`]
      : []),
    ...describeChecks(checkTargets(unique)),
    "",
  ];
  Deno.stdout.writeSync(new TextEncoder().encode(lines.join("\n")));
}
