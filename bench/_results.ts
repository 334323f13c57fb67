/**
 * Layout of a benchmark results file (bench/results/*.json) and the
 * metrics that the report and the chart show.
 */

/** Machine and software that produced a results file. */
export interface MachineInfo {
  cpu: string;
  cores: number;
  kernel: string;
  deno: string;
  haproxy: string;
  nginx: string;
  iperf3: string;
  compiler: string;
}

/** Settings of one run. */
export interface RunSettings {
  /**
   * Length of each timed slice of short connections or ping-pong, in
   * seconds (of each load measurement in older results).
   */
  seconds: number;
  /** Warm-up before each slice, not counted, in seconds. */
  warmupSeconds: number;
  /**
   * Slices of short connections and ping-pong per row and round, taken by
   * the rows in turn. Missing in older results, which had one per round.
   */
  slices?: number;
  /** Length of each bulk run, in seconds. Missing in older results. */
  bulkSeconds?: number;
  /**
   * Uncounted load, in seconds, run through each proxy after its start:
   * both loads with slices, short connections only in older results.
   * Missing in the oldest results.
   */
  startWarmupSeconds?: number;
  /** Rounds over all rows. Each figure is the median over rounds or slices. */
  rounds: number;
  /** Concurrent clients for short connections and ping-pong. */
  conns: number;
  /** Connections held open for the memory measurement. */
  idleConns: number;
  /** Configured ports for the start-up measurement. */
  startupPorts: number;
  /** Step between probed ports when start-up is timed. The last port is always probed. */
  startupProbeStep: number;
}

/** Names of the per-row figures, each measured once per round. */
export type MetricId =
  | "connPerSec"
  | "msgPerSec"
  | "p50Us"
  | "p99Us"
  | "bulkGbitPerSec"
  | "rssMiB"
  | "idleKiBPerConn";

/** Display properties of a figure. */
export interface Metric {
  id: MetricId;
  title: string;
  unit: string;
  /** True when larger values are better. */
  higherIsBetter: boolean;
  /** Digits after the decimal point. */
  digits: number;
}

/** Figures in report order. */
export const METRICS: readonly Metric[] = [
  {
    id: "connPerSec",
    title: "Short connections",
    unit: "conn/s",
    higherIsBetter: true,
    digits: 0,
  },
  {
    id: "msgPerSec",
    title: "64 B ping-pong",
    unit: "msg/s",
    higherIsBetter: true,
    digits: 0,
  },
  {
    id: "p50Us",
    title: "Ping-pong p50",
    unit: "µs",
    higherIsBetter: false,
    digits: 0,
  },
  {
    id: "p99Us",
    title: "Ping-pong p99",
    unit: "µs",
    higherIsBetter: false,
    digits: 0,
  },
  {
    id: "bulkGbitPerSec",
    title: "Bulk, 1 connection",
    unit: "Gbit/s",
    higherIsBetter: true,
    digits: 2,
  },
  {
    id: "rssMiB",
    title: "RSS at rest",
    unit: "MiB",
    higherIsBetter: false,
    digits: 1,
  },
  {
    id: "idleKiBPerConn",
    title: "RSS per idle conn",
    unit: "KiB",
    higherIsBetter: false,
    digits: 1,
  },
];

/** One row's measurements, with one value per successful round in each list. */
export interface RowResult {
  id: string;
  label: string;
  /** Reason the row has no figures, if it has none. */
  skipped?: string;
  /** Threads of the proxy process tree while it ran. */
  threads?: number;
  runs: Partial<Record<MetricId, number[]>>;
  /**
   * Round of each value in `runs`, or slice for the figures measured in
   * slices (numbered across rounds), in the same order, so that a ratio can
   * compare two rows measured together. Missing in older results files.
   */
  rounds?: Partial<Record<MetricId, number[]>>;
  /** Failed connections per metric, summed over rounds. */
  errors: Partial<Record<MetricId, number>>;
  /** Problems that cost a round, in order. */
  problems: string[];
}

/** Names of the start-up figures. */
export type StartupMetricId = "startupMs" | "rssMiB";

/** Start-up of one anyport mode with many configured ports. */
export interface StartupResult {
  id: string;
  label: string;
  /** Configured ports. */
  ports: number;
  skipped?: string;
  runs: Partial<Record<StartupMetricId, number[]>>;
  /**
   * Round of each value in `runs`, the same for both figures, in order.
   * Missing in older results files.
   */
  rounds?: number[];
  problems: string[];
}

/** Contents of a results file. */
export interface Results {
  version: 1;
  /** ISO 8601 time at which the run started. */
  startedAt: string;
  durationSeconds: number;
  command: string;
  machine: MachineInfo;
  settings: RunSettings;
  /** Id of the row that ratios divide by. */
  baseline: string;
  rows: RowResult[];
  startup: StartupResult[];
  /** Problems outside any row, such as a backend that exited. */
  problems: string[];
}

/** Returns the median of `values`, or `undefined` for an empty list. */
export function median(
  values: readonly number[] | undefined,
): number | undefined {
  if (!values || values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2
    ? sorted[mid]!
    : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/**
 * Returns `row`'s value divided by `baseline`'s for each round in which both
 * have a value, in round order.
 */
export function roundRatios(
  row: RowResult,
  baseline: RowResult | undefined,
  metric: MetricId,
): number[] {
  const values = row.runs[metric] ?? [];
  const rounds = row.rounds?.[metric];
  const baseValues = baseline?.runs[metric] ?? [];
  const baseRounds = baseline?.rounds?.[metric];
  if (rounds === undefined || baseRounds === undefined) return [];
  const ratios: number[] = [];
  for (const [i, round] of rounds.entries()) {
    const baseIndex = baseRounds.indexOf(round);
    const base = baseValues[baseIndex];
    const value = values[i];
    // A figure that loadgen did not report is NaN, saved as null.
    if (!Number.isFinite(value) || !Number.isFinite(base) || base === 0) {
      continue;
    }
    ratios.push(value! / base!);
  }
  return ratios;
}

/**
 * Returns the ratio of `row` to `baseline` for `metric`: the median of the
 * ratios within each round, so that the machine getting faster or slower
 * between rounds cancels out. Falls back to the ratio of the medians for
 * results without round numbers.
 */
export function ratioToBaseline(
  row: RowResult,
  baseline: RowResult | undefined,
  metric: MetricId,
): number | undefined {
  const paired = median(roundRatios(row, baseline, metric));
  if (paired !== undefined) return paired;
  const value = median(row.runs[metric]);
  const base = median(baseline?.runs[metric]);
  if (value === undefined || base === undefined || base === 0) return undefined;
  return value / base;
}
