/**
 * anyport command line: runs the proxy, checks a config, or inspects and
 * removes BPF steering state.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { checkConfig } from "./cli/check.ts";
import { LOG_LEVELS, setupLogging } from "./cli/logging.ts";
import { runProxy } from "./cli/run.ts";
import { explainMissingObject } from "./ebpf/missing_object.ts";
import type { LogLevel } from "@logtape/logtape";
import type { FrontendMode } from "./proxy/settings.ts";
import denoJson from "./deno.json" with { type: "json" };

const HELP =
  `anyport ${denoJson.version}: TCP proxy that routes each port to an app's targets

Usage:
  anyport [options]               run the proxy
  anyport check [--config PATH | PATH] [--mode MODE]
                                  validate a config file and exit
  anyport bpf status [--json] [--pin-root DIR]
                                  show the BPF steering state of this network
                                  namespace; exits 3 if no proxy gets its connections
  anyport bpf detach [--pin-root DIR]
                                  remove the BPF program's link and pins

Options:
  -c, --config PATH      config file (default: ./config.json); reloaded when it
                         changes and on SIGHUP
      --mode MODE        "listeners" (one socket per port) or "bpf" (one socket,
                         ports steered by BPF sk_lookup); overrides the config's Mode
      --log-level LEVEL  lowest level logged: trace, debug, info, warning, error,
                         fatal (default: info)
      --log-format FMT   "text" or "json" lines on standard error (default: text)
      --no-access-log    do not log one line per finished connection
  -h, --help             show this help
  -V, --version          show the version

Signals: SIGHUP reloads the config. SIGINT and SIGTERM stop accepting, let open
connections finish for up to DrainTimeoutMs, reset the rest, then exit 0; a
second SIGINT or SIGTERM, 1 s or more later, resets open connections at once.

Exit codes: 0 after a clean stop or a valid check; 1 when check finds problems
or the proxy cannot start; 2 for a config invalid at start or invalid usage.`;

async function main(args: string[]): Promise<number> {
  if (args[0] === "bpf") {
    // The bpf command parses its own options, such as --pin-root.
    let bpf;
    try {
      bpf = await import("./cli/bpf.ts");
    } catch (error) {
      // deno-lint-ignore no-console
      console.error((explainMissingObject(error) as Error).message);
      return 1;
    }
    return await bpf.runBpfCommand(args.slice(1));
  }
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: "string", short: "c" },
        mode: { type: "string" },
        "log-level": { type: "string", default: "info" },
        "log-format": { type: "string", default: "text" },
        "access-log": { type: "boolean", default: true },
        "no-access-log": { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
        version: { type: "boolean", short: "V", default: false },
      },
    });
  } catch (error) {
    const message = (error as Error).message;
    // node:util's own text suggests "--", which anyport has no use for.
    const unknown = /^Unknown option '([^']+)'/.exec(message)?.[1];
    return usageError(
      unknown === undefined ? message : `Unknown option "${unknown}"`,
    );
  }
  const { values, positionals } = parsed;
  if (values.help) {
    // deno-lint-ignore no-console
    console.log(HELP);
    return 0;
  }
  if (values.version) {
    // deno-lint-ignore no-console
    console.log(`anyport ${denoJson.version} (deno ${Deno.version.deno})`);
    return 0;
  }
  const level = values["log-level"];
  if (!(LOG_LEVELS as string[]).includes(level)) {
    return usageError(
      `Invalid --log-level "${level}": use one of ${LOG_LEVELS.join(", ")}`,
    );
  }
  const format = values["log-format"];
  if (format !== "text" && format !== "json") {
    return usageError(`Invalid --log-format "${format}": use "text" or "json"`);
  }
  const mode = values.mode;
  if (mode !== undefined && mode !== "listeners" && mode !== "bpf") {
    return usageError(`Invalid --mode "${mode}": use "listeners" or "bpf"`);
  }
  await setupLogging({
    level: level as LogLevel,
    format,
    accessLog: values["access-log"] && !values["no-access-log"],
  });

  const [command, ...rest] = positionals;
  if (command !== undefined && command !== "run" && command !== "check") {
    return usageError(
      `Unknown command "${command}": use check, bpf or no command`,
    );
  }
  // `check` also takes the config path as its argument.
  const path = command === "check" && rest.length === 1
    ? rest.shift()
    : undefined;
  if (rest.length > 0) {
    const extra = command === "check" ? rest[1] ?? rest[0] : rest[0];
    return usageError(`Unexpected argument "${extra}"`);
  }
  if (path !== undefined && values.config !== undefined) {
    return usageError(
      `Two config files given, "${values.config}" and "${path}": pass only one`,
    );
  }
  const configPath = path ?? values.config ?? "./config.json";
  if (configPath === "") {
    return usageError("The config path is empty: give the config file's path");
  }
  const modeOption = mode === undefined ? {} : { mode: mode as FrontendMode };
  if (command === "check") {
    return await checkConfig(configPath, modeOption.mode);
  }
  return await runProxy({ configPath, ...modeOption });
}

function usageError(message: string): number {
  // deno-lint-ignore no-console
  console.error(`${message}\nRun "anyport --help" for usage.`);
  return 2;
}

if (import.meta.main) {
  const code = await main(Deno.args);
  const { dispose } = await import("@logtape/logtape");
  await dispose();
  Deno.exit(code);
}
