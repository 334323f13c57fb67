import type { AppConfig, Config } from "./config.ts";
import type { PortRange } from "./frontend.ts";
import { expandRanges, formatRange, mergeRanges } from "./ports.ts";
import { formatPrefix } from "./prefix.ts";
import type { Settings } from "./settings.ts";
import { firstOf } from "./plural.ts";

/** Items of a list (ports, targets, prefixes) that a change description names. */
const MAX_LISTED = 16;

/**
 * Describes what changes from `before` to `after`, one line per change,
 * such as `app "web": ports added 8081` or `ConnectTimeoutMs: 5000 -> 2000`.
 * Returns an empty list when the configs are equivalent.
 */
export function describeChanges(before: Config, after: Config): string[] {
  const changes: string[] = [];
  const old = new Map(before.apps.map((app) => [app.name, app]));
  const next = new Map(after.apps.map((app) => [app.name, app]));
  for (const [name, app] of next) {
    const previous = old.get(name);
    if (previous === undefined) {
      changes.push(
        `app "${name}" added: ports ${listPorts(app)}, targets ${
          listTargets(app)
        }`,
      );
    } else {
      changes.push(...describeAppChanges(previous, app));
    }
  }
  for (const name of old.keys()) {
    if (!next.has(name)) changes.push(`app "${name}" removed`);
  }
  changes.push(...describeSettingChanges(before.settings, after.settings));
  return changes;
}

function describeAppChanges(before: AppConfig, after: AppConfig): string[] {
  const changes: string[] = [];
  if (before.balance !== after.balance) {
    changes.push(
      `app "${after.name}": Balance ${before.balance ?? "(default)"} -> ${
        after.balance ?? "(default)"
      }`,
    );
  }
  if (before.maxConnections !== after.maxConnections) {
    changes.push(
      `app "${after.name}": MaxConnections ${
        before.maxConnections ?? "(none)"
      } -> ${after.maxConnections ?? "(none)"}`,
    );
  }
  const ports = diffPorts(before.ports, after.ports);
  const targets = diff(
    before.targets.map((t) => t.label),
    after.targets.map((t) => t.label),
  );
  for (
    const [kind, { added, removed }] of [["ports", ports], [
      "targets",
      targets,
    ]] as const
  ) {
    if (added.length > 0) {
      changes.push(
        `app "${after.name}": ${kind} added ${firstOf(added, MAX_LISTED)}`,
      );
    }
    if (removed.length > 0) {
      changes.push(
        `app "${after.name}": ${kind} removed ${firstOf(removed, MAX_LISTED)}`,
      );
    }
  }
  return changes;
}

const SETTING_NAMES: Record<keyof Settings, string> = {
  listenAddress: "ListenAddress",
  balance: "Balance",
  connectTimeoutMs: "ConnectTimeoutMs",
  backoffMs: "BackoffMs",
  maxBackoffMs: "MaxBackoffMs",
  drainTimeoutMs: "DrainTimeoutMs",
  idleTimeoutMs: "IdleTimeoutMs",
  halfCloseTimeoutMs: "HalfCloseTimeoutMs",
  mode: "Mode",
  steerPrefixes: "SteerPrefixes",
  sourcePorts: "SourcePorts",
  maxConnections: "MaxConnections",
};

function describeSettingChanges(before: Settings, after: Settings): string[] {
  const changes: string[] = [];
  for (const [field, name] of Object.entries(SETTING_NAMES)) {
    const key = field as keyof Settings;
    const a = formatSetting(before[key]);
    const b = formatSetting(after[key]);
    if (a === b) continue;
    changes.push(
      Array.isArray(before[key]) && Array.isArray(after[key])
        ? `${name}: ${describeListChange(a, b)}`
        : `${name}: ${a} -> ${b}`,
    );
  }
  return changes;
}

/**
 * Describes a change of a list setting, such as SteerPrefixes, by what it
 * adds and removes, with at most {@linkcode MAX_LISTED} items of each.
 */
function describeListChange(before: string, after: string): string {
  const old = new Set(before.split(", "));
  const next = new Set(after.split(", "));
  const added = [...next].filter((item) => !old.has(item));
  const removed = [...old].filter((item) => !next.has(item));
  const parts = [];
  if (added.length > 0) parts.push(`added ${firstOf(added, MAX_LISTED)}`);
  if (removed.length > 0) {
    parts.push(`removed ${firstOf(removed, MAX_LISTED)}`);
  }
  return parts.length > 0 ? parts.join("; ") : "reordered";
}

function formatSetting(value: Settings[keyof Settings]): string {
  if (value === undefined) return "default";
  return Array.isArray(value)
    ? value.map(formatPrefix).join(", ")
    : String(value);
}

/** Compares port sets, however they are written, and returns ranges. */
function diffPorts(before: PortRange[], after: PortRange[]) {
  const old = expandRanges(before);
  const next = expandRanges(after);
  const toRanges = (ports: number[]) =>
    mergeRanges(ports.map((port) => ({ first: port, last: port })))
      .map(formatRange);
  return {
    added: toRanges([...next].filter((port) => !old.has(port))),
    removed: toRanges([...old].filter((port) => !next.has(port))),
  };
}

function diff(before: string[], after: string[]) {
  const old = new Set(before);
  const next = new Set(after);
  return {
    added: after.filter((item) => !old.has(item)),
    removed: before.filter((item) => !next.has(item)),
  };
}

function listPorts(app: AppConfig): string {
  return firstOf(app.ports.map(formatRange), MAX_LISTED);
}

function listTargets(app: AppConfig): string {
  return firstOf(app.targets.map((t) => t.label), MAX_LISTED);
}
