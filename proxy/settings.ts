import {
  formatPrefix,
  parseAddress,
  parsePrefix,
  type Prefix,
} from "./prefix.ts";
import { MAX_PREFIXES } from "../ebpf/layout.ts";
import type { ConfigProblem } from "./config_error.ts";
import { SOURCE_PORT_POLICIES, type SourcePortPolicy } from "./source_ports.ts";
import { MAX_CONNECTIONS } from "./connection_limit.ts";

/** Target selection policy. */
export type BalancePolicy = "least-connections" | "round-robin" | "random";

/** Frontend kind: one socket per port, or one socket with BPF steering. */
export type FrontendMode = "listeners" | "bpf";

/** Optional top-level settings of a config file, with defaults applied. */
export interface Settings {
  /** Address that per-port listeners bind. `"::"` accepts IPv4 and IPv6. */
  listenAddress: string;
  balance: BalancePolicy;
  /** Time for a target to complete DNS lookup and TCP handshake, in ms. */
  connectTimeoutMs: number;
  /** First period a failed target is skipped for, in ms; doubles per failure. */
  backoffMs: number;
  /** Upper bound of the doubling back-off, in ms. */
  maxBackoffMs: number;
  /** Time open connections get to finish on stop, in ms. */
  drainTimeoutMs: number;
  /** Connection closed after this long without a byte either way, in ms; 0 never. */
  idleTimeoutMs: number;
  /**
   * The idle timeout of a connection whose one side has sent its FIN, in
   * ms; 0 never. `undefined` applies `idleTimeoutMs`.
   */
  halfCloseTimeoutMs: number | undefined;
  mode: FrontendMode;
  /** Destination addresses that BPF mode steers; other addresses are left alone. */
  steerPrefixes: Prefix[];
  /**
   * `"rotate"`: target connections take the ephemeral ports in turn, per
   * target address; `"kernel"`: `connect(2)` chooses as usual.
   */
  sourcePorts: SourcePortPolicy;
  /**
   * Connections open at once, beyond which listeners stop accepting.
   * `undefined` derives it from the open-file limit.
   */
  maxConnections: number | undefined;
}

/** Defaults, chosen to match what HAProxy and Envoy users expect. */
export const DEFAULT_SETTINGS: Readonly<Settings> = Object.freeze({
  listenAddress: "::",
  balance: "least-connections",
  connectTimeoutMs: 5_000,
  backoffMs: 1_000,
  maxBackoffMs: 30_000,
  drainTimeoutMs: 30_000,
  idleTimeoutMs: 3_600_000,
  halfCloseTimeoutMs: undefined,
  mode: "listeners",
  steerPrefixes: [parsePrefix("127.0.0.0/8"), parsePrefix("::1/128")],
  sourcePorts: "rotate",
  maxConnections: undefined,
});

/**
 * Largest duration a timer can hold: `setTimeout` takes a signed 32-bit
 * delay and fires at once for anything larger (about 24.8 days).
 */
const MAX_DURATION_MS = 2_147_483_647;

/** Config keys of the settings, and how each value is read. */
const DURATIONS = {
  ConnectTimeoutMs: { field: "connectTimeoutMs", min: 1 },
  BackoffMs: { field: "backoffMs", min: 1 },
  MaxBackoffMs: { field: "maxBackoffMs", min: 1 },
  DrainTimeoutMs: { field: "drainTimeoutMs", min: 0 },
  IdleTimeoutMs: { field: "idleTimeoutMs", min: 0 },
  HalfCloseTimeoutMs: { field: "halfCloseTimeoutMs", min: 0 },
} as const;

/** Every value of `Balance`, in the order the error message lists them. */
export const BALANCE_POLICIES: readonly BalancePolicy[] = [
  "least-connections",
  "round-robin",
  "random",
];
const MODES: readonly FrontendMode[] = ["listeners", "bpf"];

/** Every top-level key that a config file may contain. */
export const SETTING_KEYS: readonly string[] = [
  "ListenAddress",
  "Balance",
  "Mode",
  "SteerPrefixes",
  "SourcePorts",
  "MaxConnections",
  ...Object.keys(DURATIONS),
];

/**
 * Reads the settings from a parsed config root, applying defaults for
 * missing keys. Appends one problem per invalid value to `problems`.
 */
export function readSettings(
  root: Record<string, unknown>,
  problems: ConfigProblem[],
): Settings {
  const settings: Settings = {
    ...DEFAULT_SETTINGS,
    steerPrefixes: [...DEFAULT_SETTINGS.steerPrefixes],
  };
  for (const [key, { field, min }] of Object.entries(DURATIONS)) {
    const value = root[key];
    if (value === undefined) continue;
    if (
      typeof value !== "number" || !Number.isInteger(value) || value < min ||
      value > MAX_DURATION_MS
    ) {
      problems.push({
        path: key,
        message: `${
          JSON.stringify(value)
        } is not a duration: use an integer number of milliseconds from ${min} to ${MAX_DURATION_MS}`,
      });
    } else {
      settings[field] = value;
    }
  }
  if (settings.maxBackoffMs < settings.backoffMs) {
    problems.push({
      path: "MaxBackoffMs",
      message:
        `${settings.maxBackoffMs} is less than BackoffMs (${settings.backoffMs}): raise it or lower BackoffMs`,
    });
  }
  readChoice(
    root,
    "Balance",
    BALANCE_POLICIES,
    problems,
    (v) => settings.balance = v,
  );
  readChoice(root, "Mode", MODES, problems, (v) => settings.mode = v);
  readChoice(
    root,
    "SourcePorts",
    SOURCE_PORT_POLICIES,
    problems,
    (v) => settings.sourcePorts = v,
  );
  readListenAddress(root, problems, settings);
  readSteerPrefixes(root, problems, settings);
  readMaxConnections(root, problems, settings);
  return settings;
}

function readMaxConnections(
  root: Record<string, unknown>,
  problems: ConfigProblem[],
  settings: Settings,
): void {
  const value = root.MaxConnections;
  if (value === undefined) return;
  if (
    typeof value === "number" && Number.isInteger(value) && value >= 1 &&
    value <= MAX_CONNECTIONS
  ) {
    settings.maxConnections = value;
    return;
  }
  problems.push({
    path: "MaxConnections",
    message: `${
      JSON.stringify(value)
    } is not a connection count: use an integer from 1 to ${MAX_CONNECTIONS}, or leave MaxConnections out to derive it from the open-file limit`,
  });
}

/**
 * Reads `object[key]` when present, one of `choices`; otherwise appends a
 * problem at `path`, which defaults to the key itself.
 */
export function readChoice<T extends string>(
  object: Record<string, unknown>,
  key: string,
  choices: readonly T[],
  problems: ConfigProblem[],
  assign: (value: T) => void,
  path: string = key,
): void {
  const value = object[key];
  if (value === undefined) return;
  if (
    typeof value === "string" && (choices as readonly string[]).includes(value)
  ) {
    assign(value as T);
    return;
  }
  problems.push({
    path,
    message: `${JSON.stringify(value)} is not valid: use one of ${
      choices.map((c) => `"${c}"`).join(", ")
    }`,
  });
}

function readListenAddress(
  root: Record<string, unknown>,
  problems: ConfigProblem[],
  settings: Settings,
): void {
  const value = root.ListenAddress;
  if (value === undefined) return;
  if (typeof value === "string" && isLiteralAddress(value)) {
    settings.listenAddress = value;
    return;
  }
  problems.push({
    path: "ListenAddress",
    message: `${
      JSON.stringify(value)
    } is not an IP address: use a literal such as "0.0.0.0", "::" or "127.0.0.1", without brackets or port`,
  });
}

/**
 * Returns a problem for an IPv6 prefix inside `::ffff:0:0/96`, the
 * IPv4-mapped addresses. The kernel gives the program IPv4 connections with
 * their IPv4 addresses, so such a prefix would never match.
 */
function mappedPrefixProblem(text: string, prefix: Prefix): string | undefined {
  const bytes = prefix.address;
  const mapped = prefix.family === 6 && prefix.length >= 96 &&
    bytes.subarray(0, 10).every((byte) => byte === 0) &&
    bytes[10] === 0xff && bytes[11] === 0xff;
  if (!mapped) return undefined;
  const ipv4 = formatPrefix({
    family: 4,
    address: bytes.slice(12),
    length: prefix.length - 96,
  });
  return `"${text}" is an IPv4-mapped prefix, which never matches, because steering sees IPv4 connections with IPv4 addresses: write "${ipv4}" instead`;
}

function duplicateProblem(
  text: string,
  first: number | undefined,
): string | undefined {
  if (first === undefined) return undefined;
  return `"${text}" is listed twice, also at SteerPrefixes[${first}]: remove one`;
}

function readSteerPrefixes(
  root: Record<string, unknown>,
  problems: ConfigProblem[],
  settings: Settings,
): void {
  const value = root.SteerPrefixes;
  if (value === undefined) return;
  if (!Array.isArray(value) || value.length === 0) {
    problems.push({
      path: "SteerPrefixes",
      message: `${
        JSON.stringify(value)
      } is not valid: use a non-empty list of prefixes such as ["192.0.2.0/24", "2001:db8::/64"]`,
    });
    return;
  }
  settings.steerPrefixes = [];
  const seen = new Map<string, number>();
  for (const [i, item] of value.entries()) {
    let prefix: Prefix;
    try {
      if (typeof item !== "string") {
        throw new SyntaxError(`${JSON.stringify(item)} is not a string`);
      }
      prefix = parsePrefix(item);
    } catch (error) {
      problems.push({
        path: `SteerPrefixes[${i}]`,
        message: (error as Error).message,
      });
      continue;
    }
    const problem = mappedPrefixProblem(item as string, prefix) ??
      duplicateProblem(item as string, seen.get(formatPrefix(prefix)));
    if (problem !== undefined) {
      problems.push({ path: `SteerPrefixes[${i}]`, message: problem });
      continue;
    }
    seen.set(formatPrefix(prefix), i);
    settings.steerPrefixes.push(prefix);
  }
  // The program's prefix maps have room for this many per family. A longer
  // list would fail partway through writing them.
  for (const family of [4, 6] as const) {
    const count = new Set(
      settings.steerPrefixes.filter((p) => p.family === family).map(
        formatPrefix,
      ),
    ).size;
    if (count > MAX_PREFIXES) {
      problems.push({
        path: "SteerPrefixes",
        message:
          `lists ${count} IPv${family} prefixes, more than the ${MAX_PREFIXES} that BPF steering holds: merge them into shorter prefixes`,
      });
    }
  }
}

function isLiteralAddress(text: string): boolean {
  return parseAddress(text) !== undefined;
}
