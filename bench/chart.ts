/**
 * SVG chart of a benchmark run: for each figure, one bar per proxy. The bar
 * length is the proxy's score against the baseline row, so longer is always
 * better. The label shows the value and its ratio to the baseline, the same
 * ratio that docs/benchmarks.md shows.
 *
 * @module
 */
import {
  median,
  type Metric,
  METRICS,
  ratioToBaseline,
  type Results,
} from "./_results.ts";

const WIDTH = 760;
const LABEL_WIDTH = 200;
const VALUE_WIDTH = 130;
const BAR_HEIGHT = 14;
const BAR_GAP = 4;
const GROUP_GAP = 14;
const HEADER_HEIGHT = 18;
const TOP = 78;
const COLORS = [
  "#1f6feb",
  "#54aeff",
  "#cf222e",
  "#ff8182",
  "#2da44e",
  "#8250df",
];

function escapeXml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;").replaceAll('"', "&quot;");
}

/**
 * Returns the score of `value` against `baseline`: the ratio for figures
 * where more is better and its inverse for the others, so 2 always means
 * twice as good.
 */
export function score(metric: Metric, value: number, baseline: number): number {
  return metric.higherIsBetter ? value / baseline : baseline / value;
}

function formatValue(metric: Metric, value: number): string {
  return `${
    value.toLocaleString("en-US", {
      maximumFractionDigits: metric.digits,
      minimumFractionDigits: metric.digits,
    })
  } ${metric.unit}`;
}

interface Bar {
  label: string;
  color: string;
  score: number;
  text: string;
}

function collectBars(results: Results, metric: Metric): Bar[] {
  const baseline = results.rows.find((row) => row.id === results.baseline);
  const proxied = results.rows.filter((row) => row.id !== "direct");
  const bars: Bar[] = [];
  for (const [i, row] of proxied.entries()) {
    const value = median(row.runs[metric.id]);
    const ratio = ratioToBaseline(row, baseline, metric.id);
    if (value === undefined || ratio === undefined || ratio <= 0) continue;
    bars.push({
      label: row.label,
      color: COLORS[i % COLORS.length]!,
      score: score(metric, ratio, 1),
      text: `${formatValue(metric, value)}, ${ratio.toFixed(2)}×`,
    });
  }
  return bars;
}

/** Renders the chart of `results` as a standalone SVG document. */
export function renderChart(results: Results): string {
  const groups = METRICS.map((metric) => ({
    metric,
    bars: collectBars(results, metric),
  })).filter((group) => group.bars.length > 0);
  const maxScore = Math.max(
    1.5,
    ...groups.flatMap((g) => g.bars.map((b) => b.score)),
  );
  const barArea = WIDTH - LABEL_WIDTH - VALUE_WIDTH;
  const x = (s: number) => LABEL_WIDTH + (s / maxScore) * barArea;
  const baseLabel =
    results.rows.find((row) => row.id === results.baseline)?.label ??
      results.baseline;

  const parts: string[] = [];
  let y = TOP;
  for (const { metric, bars } of groups) {
    const better = metric.higherIsBetter ? "higher" : "lower";
    parts.push(
      `<text x="8" y="${y + 13}" font-weight="bold">${
        escapeXml(`${metric.title} (${metric.unit}, ${better} is better)`)
      }</text>`,
    );
    y += HEADER_HEIGHT;
    for (const bar of bars) {
      const width = Math.max(1, x(bar.score) - LABEL_WIDTH);
      parts.push(
        `<text x="${LABEL_WIDTH - 6}" y="${y + 11}" text-anchor="end">${
          escapeXml(bar.label)
        }</text>`,
        `<rect x="${LABEL_WIDTH}" y="${y}" width="${width.toFixed(1)}" ` +
          `height="${BAR_HEIGHT}" fill="${bar.color}"/>`,
        `<text x="${(LABEL_WIDTH + width + 4).toFixed(1)}" y="${y + 11}">${
          escapeXml(bar.text)
        }</text>`,
      );
      y += BAR_HEIGHT + BAR_GAP;
    }
    y += GROUP_GAP;
  }
  const height = y + 8;
  const one = x(1).toFixed(1);
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" ` +
    `height="${height}" viewBox="0 0 ${WIDTH} ${height}" ` +
    `font-family="sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="8" y="20" font-size="15" font-weight="bold">${
      escapeXml(`anyport benchmark, relative to ${baseLabel}`)
    }</text>`,
    `<text x="8" y="40">${
      escapeXml(
        `Dashed line: ${baseLabel}. Longer bars are better for every ` +
          `figure; labels give the value and its ratio to ${baseLabel}.`,
      )
    }</text>`,
    `<text x="8" y="54">${
      escapeXml(
        `${results.machine.cores} cores, ${results.machine.cpu}, ` +
          `Linux ${results.machine.kernel}, ${
            results.startedAt.slice(0, 10)
          }, ` +
          `median of ${results.settings.rounds} round${
            results.settings.rounds === 1 ? "" : "s"
          }.`,
      )
    }</text>`,
    `<line x1="${one}" y1="${TOP - 6}" x2="${one}" y2="${height - 8}" ` +
    `stroke="#57606a" stroke-dasharray="3,3"/>`,
    ...parts,
    "</svg>",
    "",
  ].join("\n");
}
