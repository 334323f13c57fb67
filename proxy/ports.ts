import type { PortRange } from "./frontend.ts";

/**
 * Parses one entry of an app's `Ports`: an integer port, or a string range
 * `"first-last"` with both ends included.
 *
 * @returns the range, or an error message naming the value and the fix
 */
export function parsePortSpec(value: unknown): PortRange | string {
  if (typeof value === "number") {
    return isPort(value)
      ? { first: value, last: value }
      : `${JSON.stringify(value)} is not a port (1-65535)`;
  }
  if (typeof value !== "string") {
    return `${
      JSON.stringify(value)
    } is not a port: use an integer 1-65535 or a range "first-last"`;
  }
  if (/^\d+$/.test(value)) return quotedPort(value);
  const match = /^(\d{1,5})-(\d{1,5})$/.exec(value);
  if (match === null) {
    return `"${value}" is not a port range: use "first-last", such as "20000-29999", or an integer for one port`;
  }
  const first = Number(match[1]);
  const last = Number(match[2]);
  if (!isPort(first) || !isPort(last)) {
    return `"${value}" is not a port range: both ends must be ports (1-65535)`;
  }
  if (match[1]!.startsWith("0") || match[2]!.startsWith("0")) {
    return `"${value}" is not a port range: an end has a leading zero, write "${first}-${last}"`;
  }
  if (first > last) {
    return `"${value}" is not a port range: ${first} is greater than ${last}`;
  }
  return { first, last };
}

/** Returns the message for one port given as a string of digits, with the fix. */
function quotedPort(value: string): string {
  const port = Number(value);
  if (!isPort(port)) {
    return `"${value}" is not a port: use an integer 1-65535, without quotes`;
  }
  return `"${value}" is a string: write one port as the number ${port}, without quotes, or a range as "first-last"`;
}

/** Returns whether `value` is an integer TCP port, 1-65535. */
export function isPort(value: number): boolean {
  return Number.isInteger(value) && value >= 1 && value <= 65535;
}

/** Formats a range as `6001` or `6001-6400`. */
export function formatRange(range: PortRange): string {
  return range.first === range.last
    ? `${range.first}`
    : `${range.first}-${range.last}`;
}

/** Sorts ranges and merges those that touch or overlap. */
export function mergeRanges(ranges: Iterable<PortRange>): PortRange[] {
  const sorted = [...ranges].sort((a, b) => a.first - b.first);
  const merged: PortRange[] = [];
  for (const range of sorted) {
    const last = merged.at(-1);
    if (last !== undefined && range.first <= last.last + 1) {
      last.last = Math.max(last.last, range.last);
    } else {
      merged.push({ ...range });
    }
  }
  return merged;
}

/** Returns every port in `ranges`, each once. */
export function expandRanges(ranges: readonly PortRange[]): Set<number> {
  const ports = new Set<number>();
  for (const { first, last } of ranges) {
    for (let port = first; port <= last; port++) ports.add(port);
  }
  return ports;
}

/** Counts the ports in a list of ranges that do not overlap. */
export function countPorts(ranges: readonly PortRange[]): number {
  return ranges.reduce((sum, r) => sum + r.last - r.first + 1, 0);
}
