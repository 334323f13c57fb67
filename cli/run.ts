import { getLogger } from "@logtape/logtape";
import { type Config, parseConfig, readConfigText } from "../proxy/config.ts";
import { ConfigError, formatProblem } from "../proxy/config_error.ts";
import { type ReloadTrigger, watchConfig } from "../proxy/config_watch.ts";
import type { ConnHandler, Frontend } from "../proxy/frontend.ts";
import { PortListeners } from "../proxy/port_listeners.ts";
import { formatRange } from "../proxy/ports.ts";
import { Proxy } from "../proxy/proxy.ts";
import { counted } from "../proxy/plural.ts";
import type { EventLoop } from "../proxy/event_loop.ts";
import type { FrontendMode } from "../proxy/settings.ts";
import { explainMissingObject } from "../ebpf/missing_object.ts";
import { warnOfPinnedSteering } from "./stale_steering.ts";
import { logSuppressed } from "../proxy/rate_limit.ts";
import { isResourceExhausted, withoutCall } from "../proxy/os_error.ts";
import { ReloadRetry } from "./reload_retry.ts";
import { StateLockBusy } from "../ebpf/state_lock_busy.ts";

const log = getLogger(["anyport"]);

/** Options of the default command, which runs the proxy. */
export interface RunOptions {
  configPath: string;
  /** Overrides the config's `Mode` when set. */
  mode?: FrontendMode;
}

/**
 * Runs the proxy until SIGINT or SIGTERM, reloading the config when the
 * file changes or on SIGHUP. Returns the exit code.
 */
export async function runProxy(options: RunOptions): Promise<number> {
  const source = new ConfigSource(options);
  let config: Config;
  try {
    config = await source.read();
  } catch (error) {
    logConfigError(options.configPath, error, "Cannot start", "fatal");
    return 2;
  }

  // Signals and file events are watched before the proxy starts, so a
  // SIGHUP or an edit during start-up is not lost (and SIGHUP's default
  // action, which ends the process, never applies). They wait for the start.
  const started = Promise.withResolvers<Proxy | undefined>();
  let reloading = started.promise.then(() => {});
  const retry = new ReloadRetry(() => reload("file"));
  let settle: ReturnType<typeof setTimeout> | undefined;
  let stopping = false;
  const reload = (trigger: ReloadTrigger | "settled") => {
    if (stopping) return;
    retry.cancel();
    clearTimeout(settle);
    reloading = reloading.then(async () => {
      const proxy = await started.promise;
      if (proxy === undefined) return;
      const outcome = await reloadConfig(proxy, source, trigger);
      if (outcome === "retry") retry.schedule();
      else retry.reset();
      if (outcome === "settle") {
        settle = setTimeout(() => reload("settled"), SETTLE_MS);
      }
    });
  };
  const stopWatching = watchConfig(options.configPath, reload);
  const force = new AbortController();
  const stopRequested = waitForStopSignal(() => {
    // A signal to a process group arrives here twice.
    if (force.signal.aborted) return;
    log.warning("Second stop signal: closing open connections now");
    force.abort();
  });

  let proxy: Proxy;
  try {
    proxy = await Proxy.start(config, createFrontend);
  } catch (error) {
    started.resolve(undefined);
    stopWatching();
    log.fatal("Cannot start: {error}", { error: (error as Error).message });
    return 1;
  }
  source.applied();
  started.resolve(proxy);
  const ports = countConfigPorts(config);
  log.info(
    "Started in {mode} mode: {appCount} on {portCount}, up to {limit} at once",
    {
      mode: config.settings.mode,
      limit: counted(proxy.maxConnections, "connection"),
      maxConnections: proxy.maxConnections,
      appCount: counted(config.apps.length, "app"),
      portCount: counted(ports, "port"),
      apps: config.apps.length,
      ports,
      appPorts: Object.fromEntries(
        config.apps.map((
          app,
        ) => [app.name, app.ports.map(formatRange).join(",")]),
      ),
    },
  );

  // Counts of repeated errors that no later line reported, such as the end
  // of a burst, are logged at most one window late.
  const summaries = setInterval(() => logSuppressed(), 10_000);
  await stopRequested;
  stopping = true;
  clearInterval(summaries);
  stopWatching();
  retry.cancel();
  clearTimeout(settle);
  // SIGHUP ends the process by default, so it stays handled while draining.
  Deno.addSignalListener("SIGHUP", () => {
    log.warning("Reload ignored: the proxy is stopping");
  });
  await reloading;
  log.info(
    "Stopping: no new connections, draining {counted} for up to {drainMs} ms",
    {
      counted: counted(proxy.connections, "open connection"),
      open: proxy.connections,
      drainMs: proxy.config.settings.drainTimeoutMs,
    },
  );
  const closed = await proxy.stop(force.signal);
  logSuppressed(Date.now(), true);
  log.info(
    "Stopped; connections closed at the end of the drain: {closed}",
    { closed },
  );
  return 0;
}

/**
 * The config file, with the text last applied, to skip events that change
 * nothing. A text whose reload failed is read and applied again on the next
 * event, so a failure fixed outside the file (a port freed) needs no edit.
 * After a failed reload, the text in force is applied again too, so that
 * restoring the file logs that the error is over.
 */
class ConfigSource {
  readonly path: string;
  readonly #mode: FrontendMode | undefined;
  #lastText: string | undefined;
  #readText: string | undefined;
  #failed = false;

  constructor(options: RunOptions) {
    this.path = options.configPath;
    this.#mode = options.mode;
  }

  /**
   * Reads and validates the file. Returns `undefined` when `onlyIfChanged`
   * is set and the text is the same as last time.
   *
   * @throws {ConfigError} listing every problem in the file
   */
  async read(): Promise<Config>;
  async read(onlyIfChanged: boolean): Promise<Config | undefined>;
  async read(onlyIfChanged = false): Promise<Config | undefined> {
    const text = await readConfigText(this.path);
    if (onlyIfChanged && !this.#failed && text === this.#lastText) {
      return undefined;
    }
    this.#readText = text;
    return parseConfig(text, this.path, this.#mode);
  }

  /** Records that the text read last is in force. */
  applied(): void {
    this.#lastText = this.#readText;
    this.#failed = false;
  }

  /** Records that reading or applying the file failed. */
  failed(): void {
    this.#failed = true;
  }
}

/**
 * Time a file that a change event left unreadable or invalid gets to become
 * valid before the error is logged, in ms. An editor or `cat >` that writes
 * in place shows the file empty or half written for a moment, and the rest
 * of the write brings another event.
 */
const SETTLE_MS = 1_000;

/**
 * Reads the config and applies it. Returns `"retry"` when it failed for lack
 * of a local resource, which may come back, and `"settle"` when a file event
 * found the file unreadable or invalid, to read it again after
 * {@linkcode SETTLE_MS} unless another event comes first.
 */
async function reloadConfig(
  proxy: Proxy,
  source: ConfigSource,
  trigger: ReloadTrigger | "settled",
): Promise<"done" | "retry" | "settle"> {
  let config: Config | undefined;
  try {
    config = await source.read(trigger !== "signal");
  } catch (error) {
    if (trigger === "file" && !isResourceExhausted(error)) return "settle";
    source.failed();
    logConfigError(
      source.path,
      error,
      "Reload rejected, the running config stays in force",
    );
    return isTransient(error) ? "retry" : "done";
  }
  if (config === undefined) return "done";
  try {
    const changes = await proxy.reload(config);
    source.applied();
    if (changes.length === 0) {
      log.info("Reloaded {path}: no changes", { path: source.path });
    } else {
      log.info("Reloaded {path}: {changes}", {
        path: source.path,
        changes: listChanges(changes),
      });
    }
  } catch (error) {
    source.failed();
    log.error("Reload rejected, the running config stays in force: {error}", {
      error: (error as Error).message,
    });
    return isTransient(error) ? "retry" : "done";
  }
  return "done";
}

async function createFrontend(
  config: Config,
  loop: EventLoop,
  onConn: ConnHandler,
): Promise<Frontend> {
  if (config.settings.mode === "listeners") {
    await warnOfPinnedSteering(config);
    return new PortListeners(config.settings.listenAddress, loop, onConn);
  }
  // Imported here so that the default mode loads neither libbpf nor the
  // embedded BPF object.
  let module;
  try {
    module = await import("../proxy/bpf_frontend.ts");
  } catch (error) {
    throw explainMissingObject(error);
  }
  const { BpfFrontend } = module;
  return await BpfFrontend.open({
    prefixes: config.settings.steerPrefixes,
    onConn,
    loop,
  });
}

/** Logs a config that cannot be used, with one line per problem. */
function logConfigError(
  path: string,
  error: unknown,
  action: string,
  level: "error" | "fatal" = "error",
) {
  const write = (message: string, properties: Record<string, unknown>) =>
    level === "fatal"
      ? log.fatal(message, properties)
      : log.error(message, properties);
  if (!(error instanceof ConfigError)) {
    write(`${action}: cannot read {path}: {error}`, {
      path,
      error: withoutCall(error),
    });
    return;
  }
  write(`${action}: {path} has {counted}:`, {
    path,
    counted: counted(error.problems.length, "problem"),
    count: error.problems.length,
  });
  for (const problem of error.problems.slice(0, MAX_LOGGED_PROBLEMS)) {
    write("  {problem}", { path, problem: formatProblem(problem) });
  }
  const rest = error.problems.length - MAX_LOGGED_PROBLEMS;
  if (rest > 0) {
    write("  {rest} not listed: run anyport check {path} to see them all", {
      path,
      rest: counted(rest, "problem"),
    });
  }
}

/**
 * Changes that a reload line names. A reload that adds thousands of apps
 * would otherwise write a line of hundreds of KB, which journald and
 * container log drivers cut or split.
 */
const MAX_LOGGED_CHANGES = 16;

/** Joins the first {@linkcode MAX_LOGGED_CHANGES} changes and counts the rest. */
function listChanges(changes: string[]): string {
  const head = changes.slice(0, MAX_LOGGED_CHANGES).join("; ");
  const rest = changes.length - MAX_LOGGED_CHANGES;
  return rest > 0 ? `${head}; and ${counted(rest, "more change")}` : head;
}

/** Problems of a config that the log lists, one line each. */
const MAX_LOGGED_PROBLEMS = 50;

function countConfigPorts(config: Config): number {
  let count = 0;
  for (const app of config.apps) {
    for (const range of app.ports) count += range.last - range.first + 1;
  }
  return count;
}

/**
 * Time after the first stop signal in which another one counts as the same
 * request, in ms. Ctrl-C in a terminal, or systemd with its default
 * `KillMode=control-group`, signals every process of the group, and a
 * wrapper such as `deno task` passes its own copy on too.
 */
const REPEAT_GRACE_MS = 1000;

/**
 * Resolves on the first SIGINT or SIGTERM and calls `onRepeat` on a later
 * one, at least `REPEAT_GRACE_MS` after the first, which ends the drain
 * early as in HAProxy and nginx.
 */
function waitForStopSignal(onRepeat: () => void): Promise<void> {
  return new Promise((resolve) => {
    let first: number | undefined;
    const onSignal = () => {
      if (first === undefined) {
        first = Date.now();
        resolve();
        return;
      }
      if (Date.now() - first < REPEAT_GRACE_MS) {
        log.info(
          "Stop signal repeated within {graceMs} ms, as when it goes to a whole process group; still draining (send it again later to close connections now)",
          { graceMs: REPEAT_GRACE_MS },
        );
        return;
      }
      onRepeat();
    };
    Deno.addSignalListener("SIGINT", onSignal);
    Deno.addSignalListener("SIGTERM", onSignal);
  });
}

/**
 * Returns whether a reload failed for a reason that passes without a change
 * of the file: the proxy ran out of a resource, or another anyport process
 * kept the BPF state locked.
 */
function isTransient(error: unknown): boolean {
  return isResourceExhausted(error) || error instanceof StateLockBusy;
}
