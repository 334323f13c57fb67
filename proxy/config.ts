import { parse, type ParseError, printParseErrorCode } from "jsonc-parser";
import { deepestNesting } from "./nesting.ts";
import { ConfigError, type ConfigProblem } from "./config_error.ts";
import { findDuplicateKeys } from "./duplicate_keys.ts";
import type { PortRange } from "./frontend.ts";
import { formatRange, parsePortSpec } from "./ports.ts";
import {
  BALANCE_POLICIES,
  type BalancePolicy,
  type FrontendMode,
  readChoice,
  readSettings,
  SETTING_KEYS,
  type Settings,
} from "./settings.ts";
import { reachesProxy } from "./loop_check.ts";
import { PortIndex } from "./router.ts";
import { MAX_CONNECTIONS } from "./connection_limit.ts";
import { parseTarget, type TargetAddress } from "./target.ts";
import { CONTROL, quoted } from "./quote.ts";

/** One customer app: the ports it owns and the targets that serve it. */
export interface AppConfig {
  name: string;
  /** Ports as written, one range per entry of `Ports`. */
  ports: PortRange[];
  targets: TargetAddress[];
  /** The app's own balancing policy, in place of the top-level `Balance`. */
  balance?: BalancePolicy;
  /** Connections of this app open at once beyond which new ones are reset. */
  maxConnections?: number;
}

/** Validated config file. */
export interface Config {
  apps: AppConfig[];
  settings: Settings;
}

const APP_KEYS = ["Name", "Ports", "Targets", "Balance", "MaxConnections"];

/**
 * Maximum length of an app name, in characters (code points). Every log
 * line of the app carries its name, and lines beyond the log queue's limit
 * of 1,048,576 characters are dropped.
 */
export const MAX_NAME_LENGTH = 256;

/**
 * Reads and validates a config file.
 *
 * @param mode overrides the file's `Mode`, as `--mode` does
 * @throws {ConfigError} listing every problem in the file
 * @throws {Deno.errors.NotFound} when the file does not exist
 */
export async function readConfig(
  path: string,
  mode?: FrontendMode,
): Promise<Config> {
  return parseConfig(await readConfigText(path), path, mode);
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * Reads a config file as UTF-8. Bytes that are not UTF-8 are an error
 * rather than replacement characters, which would reach app names and logs.
 *
 * @throws {ConfigError} when the file is not UTF-8, naming where
 * @throws {Deno.errors.NotFound} when the file does not exist
 */
export async function readConfigText(path: string): Promise<string> {
  const bytes = await Deno.readFile(path);
  try {
    return utf8.decode(bytes);
  } catch {
    const utf16 = (bytes[0] === 0xff && bytes[1] === 0xfe) ||
      (bytes[0] === 0xfe && bytes[1] === 0xff) || bytes.includes(0);
    if (utf16) {
      throw new ConfigError(path, [{
        path: "",
        message: "the file looks like UTF-16: save it as UTF-8",
      }]);
    }
    // The text before the first invalid byte decodes, so it gives the place.
    let end = 0;
    while (end < bytes.length) {
      const length = sequenceLength(bytes, end);
      if (length === 0) break;
      end += length;
    }
    const before = new TextDecoder().decode(bytes.subarray(0, end));
    const line = before.split("\n").length;
    const column = before.length - before.lastIndexOf("\n");
    throw new ConfigError(path, [{
      path: "",
      message: `byte 0x${
        bytes[end]!.toString(16).padStart(2, "0")
      } at line ${line}, column ${column} is not UTF-8: save the file as UTF-8`,
    }]);
  }
}

/**
 * Returns the length of the valid UTF-8 sequence at `offset` of `bytes`, or
 * 0 when the bytes there are not UTF-8.
 */
function sequenceLength(bytes: Uint8Array, offset: number): number {
  const first = bytes[offset]!;
  const length = first < 0x80
    ? 1
    : first >= 0xc2 && first < 0xe0
    ? 2
    : first >= 0xe0 && first < 0xf0
    ? 3
    : first >= 0xf0 && first < 0xf5
    ? 4
    : 0;
  if (length === 0 || offset + length > bytes.length) return 0;
  try {
    utf8.decode(bytes.subarray(offset, offset + length));
    return length;
  } catch {
    return 0;
  }
}

/**
 * Parses and validates config text: JSON with comments and trailing commas.
 *
 * @param source file name used in the error message
 * @param mode overrides the text's `Mode` before the checks that depend on it
 * @throws {ConfigError} listing every problem found
 */
export function parseConfig(
  raw: string,
  source = "config",
  mode?: FrontendMode,
): Config {
  // Editors on Windows start UTF-8 files with a byte order mark.
  const text = raw.startsWith("\uFEFF") ? raw.slice(1) : raw;
  if (text.trim() === "") {
    throw new ConfigError(source, [{
      path: "",
      message:
        'the file is empty: write an object such as {"Apps": [{"Name": "web", "Ports": [8080], "Targets": ["127.0.0.1:9000"]}]}',
    }]);
  }
  const syntaxErrors: ParseError[] = [];
  let root: unknown;
  let problems: ConfigProblem[];
  try {
    root = parse(text, syntaxErrors, {
      allowTrailingComma: true,
      disallowComments: false,
    });
    problems = syntaxErrors.length > 0 ? [] : findDuplicateKeys(text);
  } catch (error) {
    // The parser recurses once per level of nesting.
    if (!(error instanceof RangeError)) throw error;
    throw new ConfigError(source, [tooDeepProblem(text)]);
  }
  if (syntaxErrors.length > 0) {
    // Later errors are mostly echoes of the first, so at most three.
    throw new ConfigError(
      source,
      uniqueByOffset(syntaxErrors).slice(0, 3).map((e) =>
        syntaxProblem(text, e)
      ),
    );
  }
  if (!isObject(root)) {
    throw new ConfigError(source, [{
      path: "",
      message: 'the root must be an object such as {"Apps": [...]}',
    }]);
  }
  checkKeys(root, ["Apps", ...SETTING_KEYS], "", problems);
  const settings = readSettings(root, problems);
  if (mode !== undefined) settings.mode = mode;
  const apps = readApps(root.Apps, problems);
  checkLoops(root.Apps, apps, settings, problems);
  if (problems.length > 0) {
    throw new ConfigError(source, inDocumentOrder(problems));
  }
  return { apps, settings };
}

/** Order of an app's fields in problem lists; unknown keys come first. */
const APP_FIELD_ORDER = [
  "Name",
  "Ports",
  "Targets",
  "Balance",
  "MaxConnections",
];

/**
 * Orders the problems of each app by app, field and item, after the
 * problems outside the apps, which keep the order they were found in.
 * The checks run one kind at a time, across all apps, so without this a
 * loop or a duplicate port of `Apps[0]` would be listed after `Apps[3]`.
 */
function inDocumentOrder(problems: ConfigProblem[]): ConfigProblem[] {
  const keyed = problems.map((problem, index) => {
    const match = /^Apps\[(\d+)\](?:\.(\w+)(?:\[(\d+)\])?)?/.exec(
      problem.path,
    );
    return {
      problem,
      app: match === null ? -1 : Number(match[1]),
      // The app itself, then its unknown keys, then its fields in order.
      field: match?.[2] === undefined ? -2 : APP_FIELD_ORDER.indexOf(match[2]),
      item: match?.[3] === undefined ? -1 : Number(match[3]),
      index,
    };
  });
  keyed.sort((a, b) =>
    a.app - b.app || a.field - b.field || a.item - b.item || a.index - b.index
  );
  return keyed.map((entry) => entry.problem);
}

function readApps(value: unknown, problems: ConfigProblem[]): AppConfig[] {
  if (!Array.isArray(value) || value.length === 0) {
    problems.push({
      path: "Apps",
      message: value === undefined
        ? 'is missing: add a list such as [{"Name": "web", "Ports": [8080], "Targets": ["127.0.0.1:9000"]}]'
        : Array.isArray(value)
        ? "is empty: list at least one app"
        : `${JSON.stringify(value)} is not a list: put the apps in [ ]`,
    });
    return [];
  }
  const apps = value.map((item, i) => readApp(item, `Apps[${i}]`, problems));
  checkDuplicateNames(apps, problems);
  checkDuplicateTargets(value, problems);
  checkPortOwners(apps, problems);
  return apps;
}

function readApp(
  value: unknown,
  path: string,
  problems: ConfigProblem[],
): AppConfig {
  const app: AppConfig = { name: "", ports: [], targets: [] };
  if (!isObject(value)) {
    problems.push({
      path,
      message: `${JSON.stringify(value)} is not an app object`,
    });
    return app;
  }
  checkKeys(value, APP_KEYS, path, problems);
  const named = typeof value.Name === "string" && value.Name.trim() !== "";
  const length = named ? codePoints(value.Name as string) : 0;
  if (named && !CONTROL.test(value.Name as string)) {
    if (length <= MAX_NAME_LENGTH) {
      app.name = value.Name as string;
    } else {
      problems.push({
        path: `${path}.Name`,
        message:
          `is ${length} characters long: use a name of at most ${MAX_NAME_LENGTH} characters`,
      });
    }
  } else if (named) {
    // Names appear in the app's log lines, where a line break could forge a
    // line.
    problems.push({
      path: `${path}.Name`,
      message: `${
        quoted(value.Name as string)
      } is not a name: remove the control and invisible characters, such as line breaks and text direction marks, and write spaces as plain spaces`,
    });
  } else {
    problems.push({
      path: `${path}.Name`,
      message: value.Name === undefined
        ? "is missing: every app needs a unique name"
        : `${JSON.stringify(value.Name)} is not a name: use a non-empty string`,
    });
  }
  app.ports = readList(value.Ports, `${path}.Ports`, problems, parsePortSpec);
  app.targets = readList(
    value.Targets,
    `${path}.Targets`,
    problems,
    parseTarget,
  );
  readChoice(
    value,
    "Balance",
    BALANCE_POLICIES,
    problems,
    (policy) => app.balance = policy,
    `${path}.Balance`,
  );
  const max = value.MaxConnections;
  if (max === undefined) return app;
  if (
    typeof max === "number" && Number.isInteger(max) && max >= 1 &&
    max <= MAX_CONNECTIONS
  ) {
    app.maxConnections = max;
  } else {
    problems.push({
      path: `${path}.MaxConnections`,
      message: `${
        JSON.stringify(max)
      } is not a connection count: use an integer from 1 to ${MAX_CONNECTIONS}, or leave it out for no limit of the app's own`,
    });
  }
  return app;
}

/** Reads a non-empty list, parsing each item; a string result is an error. */
function readList<T>(
  value: unknown,
  path: string,
  problems: ConfigProblem[],
  parseItem: (item: unknown) => T | string,
): T[] {
  if (!Array.isArray(value) || value.length === 0) {
    problems.push({
      path,
      message: value === undefined
        ? "is missing: add a list with at least one entry"
        : Array.isArray(value)
        ? "is empty: list at least one entry"
        : `${JSON.stringify(value)} is not a list: write [${
          JSON.stringify(value)
        }]`,
    });
    return [];
  }
  const items: T[] = [];
  for (const [i, item] of value.entries()) {
    const parsed = parseItem(item);
    if (typeof parsed === "string") {
      problems.push({ path: `${path}[${i}]`, message: parsed });
    } else {
      items.push(parsed);
    }
  }
  return items;
}

function checkDuplicateNames(apps: AppConfig[], problems: ConfigProblem[]) {
  const seen = new Map<string, number>();
  for (const [i, app] of apps.entries()) {
    if (app.name === "") continue;
    const first = seen.get(app.name);
    if (first === undefined) {
      seen.set(app.name, i);
    } else {
      problems.push({
        path: `Apps[${i}].Name`,
        message:
          `"${app.name}" is already the name of Apps[${first}]: names must be unique`,
      });
    }
  }
}

/**
 * Reports targets that point back at a port of this proxy on a loopback
 * address it serves, when the app behind that port leads back to the app of
 * the target: every connection would connect to the proxy again, until
 * descriptors run out. A chain that ends at a server, such as an old port
 * kept as an alias of another app, is allowed. Goes over the targets as
 * written, so that the index in the problem's path counts the invalid ones
 * too.
 */
function checkLoops(
  rawApps: unknown,
  apps: AppConfig[],
  settings: Settings,
  problems: ConfigProblem[],
) {
  if (!Array.isArray(rawApps)) return;
  // With overlapping ports reported, the first owner found is as good as any.
  const owners = new PortIndex(apps, (app) => app.ports);
  const ownerOf = (port: number) => owners.find(port);
  // For each app, the apps that its targets lead into through the proxy.
  const next = new Map<AppConfig, Set<AppConfig>>();
  for (const app of apps) {
    const owners = app.targets
      .filter((target) => reachesProxy(target.hostname, settings))
      .map((target) => ownerOf(target.port))
      .filter((owner) => owner !== undefined);
    next.set(app, new Set(owners));
  }
  for (const [appIndex, item] of rawApps.entries()) {
    // Items that are not app objects were reported by readApp.
    if (!isObject(item) || !Array.isArray(item.Targets)) continue;
    // readApps returns one app per item, in order.
    const app = apps[appIndex]!;
    for (const [i, text] of item.Targets.entries()) {
      const target = parseTarget(text);
      if (typeof target === "string") continue;
      if (!reachesProxy(target.hostname, settings)) continue;
      const owner = ownerOf(target.port);
      if (owner === undefined) continue;
      const back = pathBetween(owner, app, next);
      if (back === undefined) continue;
      const via = back.slice(1).map((a) => appLabel(apps, a));
      const through = owner === app
        ? ""
        : `, whose targets lead back to ${appLabel(apps, app)}${
          via.length > 0 ? ` through ${via.join(" and ")}` : ""
        }`;
      problems.push({
        path: `Apps[${appIndex}].Targets[${i}]`,
        message: `"${target.label}" is port ${target.port} of this proxy (${
          appLabel(apps, owner)
        }${through}): connections would loop back into the proxy; point it at the server instead`,
      });
    }
  }
}

/**
 * Returns the apps on a path from `from` to `to` through the proxy, `from`
 * first and `to` left out, or `undefined` when there is none.
 */
function pathBetween(
  from: AppConfig,
  to: AppConfig,
  next: Map<AppConfig, Set<AppConfig>>,
): AppConfig[] | undefined {
  const seen = new Set<AppConfig>();
  const search = (app: AppConfig): AppConfig[] | undefined => {
    if (app === to) return [];
    if (seen.has(app)) return undefined;
    seen.add(app);
    for (const following of next.get(app) ?? []) {
      const rest = search(following);
      if (rest !== undefined) return [app, ...rest];
    }
    return undefined;
  };
  return search(from);
}

/** Reports a target listed twice in one app, which would double its share. */
function checkDuplicateTargets(raw: unknown[], problems: ConfigProblem[]) {
  for (const [appIndex, item] of raw.entries()) {
    // Items that are not app objects were reported by readApp.
    if (!isObject(item)) continue;
    const targets = item.Targets;
    if (!Array.isArray(targets)) continue;
    const seen = new Map<string, number>();
    for (const [i, target] of targets.entries()) {
      if (typeof target !== "string") continue;
      const first = seen.get(target);
      if (first === undefined) {
        seen.set(target, i);
        continue;
      }
      problems.push({
        path: `Apps[${appIndex}].Targets[${i}]`,
        message:
          `"${target}" is already listed as Targets[${first}] of this app: list each target once`,
      });
    }
  }
}

/** Reports every port that two entries claim, in one app or in two. */
function checkPortOwners(apps: AppConfig[], problems: ConfigProblem[]) {
  const entries = apps.flatMap((app, appIndex) =>
    app.ports.map((range, portIndex) => ({ range, appIndex, portIndex }))
  );
  entries.sort((a, b) => a.range.first - b.range.first);
  let widest: (typeof entries)[number] | undefined;
  for (const entry of entries) {
    if (widest !== undefined && entry.range.first <= widest.range.last) {
      const overlap = {
        first: entry.range.first,
        last: Math.min(entry.range.last, widest.range.last),
      };
      const owner = `Apps[${widest.appIndex}].Ports[${widest.portIndex}]`;
      const ownerName = apps[widest.appIndex]!.name;
      // An app whose name is invalid has none, and `owner` names its path.
      const where = widest.appIndex === entry.appIndex
        ? " in this app"
        : ownerName
        ? ` in app "${ownerName}"`
        : "";
      problems.push({
        path: `Apps[${entry.appIndex}].Ports[${entry.portIndex}]`,
        message: `port ${
          formatRange(overlap)
        } is already used by ${owner}${where}: a port belongs to one app, once`,
      });
    }
    if (widest === undefined || entry.range.last > widest.range.last) {
      widest = entry;
    }
  }
}

function checkKeys(
  value: Record<string, unknown>,
  known: readonly string[],
  path: string,
  problems: ConfigProblem[],
) {
  for (const key of Object.keys(value)) {
    if (known.includes(key)) continue;
    // A key with a line break would forge a line in `check`'s output.
    const printedKey = CONTROL.test(key) ? quoted(key) : key;
    if (path !== "" && SETTING_KEYS.includes(key)) {
      problems.push({
        path: `${path}.${printedKey}`,
        message:
          `${key} is a setting of the whole config, not of one app: move it to the top level, next to "Apps"`,
      });
      continue;
    }
    const hint = closestKey(key, known);
    problems.push({
      path: path === "" ? printedKey : `${path}.${printedKey}`,
      message: `unknown key${
        hint === undefined ? "" : `: did you mean "${hint}"?`
      }${hint === undefined ? `: known keys are ${known.join(", ")}` : ""}`,
    });
  }
}

/** Finds a known key within two edits of `key`, ignoring case. */
function closestKey(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = 3;
  for (const candidate of known) {
    const distance = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

/** Damerau-Levenshtein distance (adjacent swaps count as one edit). */
function editDistance(a: string, b: string): number {
  // d[i][j] is the distance between the first i letters of a and the
  // first j letters of b; the first row and column count insertions.
  const d: number[][] = [];
  for (let i = 0; i <= a.length; i++) {
    d.push(new Array<number>(b.length + 1).fill(0));
    d[i]![0] = i;
  }
  for (let j = 0; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let value = Math.min(
        d[i - 1]![j]! + 1,
        d[i]![j - 1]! + 1,
        d[i - 1]![j - 1]! + cost,
      );
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        value = Math.min(value, d[i - 2]![j - 2]! + 1);
      }
      d[i]![j] = value;
    }
  }
  return d[a.length]![b.length]!;
}

/** Plain words for the parser's error codes; others keep the code's name. */
const SYNTAX_MESSAGES: Record<string, string> = {
  InvalidNumberFormat: "invalid number",
  PropertyNameExpected: "a property name in double quotes is expected",
  ValueExpected: "a value is expected",
  ColonExpected: 'a ":" is expected',
  CommaExpected: 'a "," is expected',
  CloseBraceExpected: 'a "}" is expected',
  CloseBracketExpected: 'a "]" is expected',
  EndOfFileExpected: "nothing may follow the root value",
  UnexpectedEndOfComment: "a comment is not closed",
  UnexpectedEndOfString: "a string is not closed",
  InvalidEscapeCharacter: "invalid escape in a string",
  InvalidCharacter: "invalid character in a string",
};

/** Keeps the first error at each position; a cut-off file repeats them. */
function uniqueByOffset(errors: ParseError[]): ParseError[] {
  const seen = new Set<number>();
  return errors.filter((e) => !seen.has(e.offset) && seen.add(e.offset));
}

function syntaxProblem(text: string, error: ParseError): ConfigProblem {
  const before = text.slice(0, error.offset);
  const line = before.split("\n").length;
  const column = error.offset - before.lastIndexOf("\n");
  const code = printParseErrorCode(error.error);
  let reason = SYNTAX_MESSAGES[code] ?? code;
  if (code === "InvalidSymbol") {
    const found = String.fromCodePoint(text.codePointAt(error.offset) ?? 0);
    reason = `unexpected ${JSON.stringify(found)}${
      found === "'" ? ": use double quotes for names and strings" : ""
    }`;
  }
  return {
    path: "",
    message: `invalid JSON at line ${line}, column ${column}: ${reason}`,
  };
}

/** Returns the number of code points in `text`, without copying it. */
function codePoints(text: string): number {
  let count = 0;
  for (const _ of text) count++;
  return count;
}

/**
 * Returns `app "NAME"` for an app of `apps`, or its path, such as `Apps[2]`,
 * when its name is invalid and was left empty.
 */
function appLabel(apps: AppConfig[], app: AppConfig): string {
  return app.name === "" ? `Apps[${apps.indexOf(app)}]` : `app "${app.name}"`;
}

/** Returns the problem of a text nested too deeply for the parser. */
function tooDeepProblem(text: string): ConfigProblem {
  const { depth, line, column } = deepestNesting(text);
  return {
    path: "",
    message:
      `invalid JSON at line ${line}, column ${column}: arrays and objects are nested ${depth} levels deep, more than the parser can read; a config needs no more than 4 levels`,
  };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
