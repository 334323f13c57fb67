/**
 * The speed and memory targets that anyport is built to meet, checked
 * against one or more benchmark results files.
 *
 * Each check takes samples, not a single figure: the ratios to the baseline
 * within each slice or round, or the value of each round. It reports their
 * median, as docs/benchmarks.md does, and a distribution-free confidence
 * interval of that median, so that a reader can tell a clear result from
 * one inside the spread of the machine.
 *
 * Usage: deno run --allow-read bench/targets.ts [RESULTS.json ...]
 * (default bench/results/latest.json). With several files, the samples of
 * all of them are pooled, which narrows the interval.
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

/** Confidence that the interval of a check contains the true median. */
export const CONFIDENCE = 0.95;

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
  /** Confidence of `interval`, below {@linkcode CONFIDENCE} with few samples. */
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
/** Maximum start-up time of BPF mode with many ports, in ms. */
const STARTUP_MS_BOUND = 1000;
/** Maximum RSS that many ports add in BPF mode: 20 MB, in MiB. */
const STARTUP_RSS_MIB_BOUND = 20e6 / 2 ** 20;

/** Rows that the targets apply to. */
function anyportRows(results: Results): RowResult[] {
  return results.rows.filter((row) =>
    row.id.startsWith("anyport") && !row.skipped
  );
}

/**
 * Returns P(X ≤ k) for X binomially distributed with `n` trials and
 * probability 1/2.
 */
function binomialCdfHalf(k: number, n: number): number {
  let term = 2 ** -n;
  let sum = 0;
  for (let i = 0; i <= k; i++) {
    sum += term;
    term = term * (n - i) / (i + 1);
  }
  return sum;
}

/**
 * Returns the order-statistic confidence interval of the median of
 * `samples`: [x(j), x(n+1-j)] with the largest j whose coverage is at least
 * {@linkcode CONFIDENCE}, or [min, max] with its lower coverage when
 * there are too few samples for that. It assumes only that the samples are
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

/** Returns the verdict on `samples` for `target`. */
function judge(target: Target, samples: readonly number[]): Verdict {
  const middle = median(samples);
  const found = medianInterval(samples);
  if (middle === undefined || found === undefined) return "not measured";
  const meets = (value: number) => {
    if (value === target.bound) return !target.strict;
    return target.atLeast ? value > target.bound : value < target.bound;
  };
  const [low, high] = found.interval;
  const worst = target.atLeast ? low : high;
  const best = target.atLeast ? high : low;
  if (meets(middle)) return meets(worst) ? "met" : "met within noise";
  return meets(best) ? "missed within noise" : "missed";
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
    verdict: judge(target, samples),
  };
}

/** Returns the ratio samples of `rowId` for `metric`, pooled over `runs`. */
function pooledRatios(
  runs: readonly Results[],
  rowId: string,
  metric: MetricId,
): number[] {
  return runs.flatMap((results) => {
    const row = results.rows.find((r) => r.id === rowId);
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
    results.rows.find((r) => r.id === rowId)?.runs[metric] ?? []
  );
}

function startupOf(results: Results, id: string): StartupResult | undefined {
  const found = results.startup.find((s) => s.id === id);
  return found?.skipped ? undefined : found;
}

/**
 * Returns the RSS that many ports add in BPF mode in each round: BPF mode's
 * RSS minus that of the 1-port config measured in the same round. anyport
 * rejects a config without apps, so one port stands for an empty config.
 */
function addedRss(results: Results): number[] {
  const many = startupOf(results, "bpf")?.runs.rssMiB ?? [];
  const one = startupOf(results, "listeners-1")?.runs.rssMiB ?? [];
  // A failed round leaves one list shorter, and then rounds cannot be paired.
  if (many.length !== one.length) {
    const a = median(many);
    const b = median(one);
    return a === undefined || b === undefined ? [] : [a - b];
  }
  return many.map((rss, i) => rss - one[i]!);
}

/**
 * Checks every target against `runs`, pooling their samples. The runs must
 * come from the same benchmark (the same row ids and baseline).
 */
export function checkTargets(runs: readonly Results[]): TargetCheck[] {
  const first = runs[0];
  if (!first) return [];
  const baseLabel = first.rows.find((r) => r.id === first.baseline)?.label ??
    first.baseline;
  const checks: TargetCheck[] = [];
  for (const row of anyportRows(first)) {
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
      checks.push(
        check(target, row.label, pooledRatios(runs, row.id, metric)),
      );
    }
    checks.push(check(
      {
        figure: "RSS per idle connection",
        bound: IDLE_KIB_BOUND,
        unit: "KiB",
        atLeast: false,
        digits: 0,
      },
      row.label,
      pooledValues(runs, row.id, "idleKiBPerConn"),
    ));
  }
  const bpf = startupOf(first, "bpf");
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
      runs.flatMap((results) =>
        startupOf(results, "bpf")?.runs.startupMs ?? []
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
      runs.flatMap(addedRss),
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

/** Formats the median and interval of `check`, e.g. "1.023× (0.990× to 1.060×)". */
export function formatMeasured(check: TargetCheck): string {
  if (check.median === undefined) return "–";
  const middle = formatFigure(check.median, check.unit);
  if (!check.interval || check.samples < 2) return middle;
  const [low, high] = check.interval.map((v) => formatFigure(v, check.unit));
  return `${middle} (${low} to ${high})`;
}

/** Returns one line of text per check, its verdict first. */
export function describeChecks(checks: readonly TargetCheck[]): string[] {
  return checks.map((c) =>
    `${c.verdict.padEnd(19)} ${c.row}: ${c.target}: ${formatMeasured(c)}, ` +
    `${c.samples} samples` +
    (c.confidence === undefined
      ? ""
      : `, ${(c.confidence * 100).toFixed(1)}% interval`)
  );
}

if (import.meta.main) {
  const paths = Deno.args.length > 0
    ? Deno.args
    : [new URL("results/latest.json", import.meta.url).pathname];
  const runs = paths.map((path) =>
    JSON.parse(Deno.readTextFileSync(path)) as Results
  );
  const lines = describeChecks(checkTargets(runs));
  const header = paths.length > 1
    ? `Targets, samples pooled over ${paths.length} runs:`
    : "Targets:";
  Deno.stdout.writeSync(
    new TextEncoder().encode([header, ...lines, ""].join("\n")),
  );
}
