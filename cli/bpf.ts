import { DEFAULT_PIN_ROOT } from "../ebpf/pinned_state.ts";
import { detachBpf, formatBpfDetach } from "./bpf_detach.ts";
import { formatBpfStatus, readBpfStatus } from "./bpf_status.ts";

const USAGE = `Usage: anyport bpf status|detach [--json] [--pin-root DIR]

  status      show the BPF steering state of this network namespace: link,
              program, proxy socket, ports, prefixes and counters; exits 3
              when no proxy gets steered connections (nothing attached, or
              no proxy socket)
  detach      detach the steering program and remove its pins; a running
              proxy stops receiving steered connections
  --json      print JSON instead of text
  --pin-root  bpffs directory of the pins (default ${DEFAULT_PIN_ROOT})`;

/** Destination of the text that {@linkcode runBpfCommand} prints. */
export interface BpfCommandOutput {
  /** Prints a result. */
  log(text: string): void;
  /** Prints an error or the usage. */
  error(text: string): void;
}

const CONSOLE_OUTPUT: BpfCommandOutput = {
  // deno-lint-ignore no-console
  log: (text) => console.log(text),
  // deno-lint-ignore no-console
  error: (text) => console.error(text),
};

interface BpfArgs {
  command: "status" | "detach";
  json: boolean;
  pinRoot: string;
}

/**
 * Runs `anyport bpf status|detach [--json] [--pin-root DIR]`.
 *
 * @param args the arguments after `bpf`
 * @returns the exit code: 0 on success, 1 on failure, 2 for invalid usage,
 * and 3 from `status` when no proxy gets steered connections
 */
export function runBpfCommand(
  args: string[],
  output: BpfCommandOutput = CONSOLE_OUTPUT,
): Promise<number> {
  if (args.includes("--help") || args.includes("-h")) {
    output.log(USAGE);
    return Promise.resolve(0);
  }
  const parsed = parseBpfArgs(args);
  if (typeof parsed === "string") {
    output.error(`${parsed}\n\n${USAGE}`);
    return Promise.resolve(2);
  }
  try {
    const { text, code } = run(parsed);
    output.log(text);
    return Promise.resolve(code);
  } catch (error) {
    output.error(`anyport bpf ${parsed.command}: ${(error as Error).message}`);
    return Promise.resolve(1);
  }
}

/** Exit code of `status` when no proxy gets steered connections. */
const NOT_SERVING = 3;

function run(args: BpfArgs): { text: string; code: number } {
  if (args.command === "status") {
    const status = readBpfStatus(args.pinRoot);
    const serving = status.attached &&
      (status.socket?.present === true || status.standby?.present === true) &&
      status.link?.netnsInode === status.netnsInode;
    return {
      text: args.json ? JSON.stringify(status) : formatBpfStatus(status),
      code: serving ? 0 : NOT_SERVING,
    };
  }
  const result = detachBpf(args.pinRoot);
  return {
    text: args.json ? JSON.stringify(result) : formatBpfDetach(result),
    code: 0,
  };
}

/** Parses the arguments, or returns what is wrong with them. */
function parseBpfArgs(args: string[]): BpfArgs | string {
  const [command, ...rest] = args;
  if (command !== "status" && command !== "detach") {
    return command === undefined
      ? "Missing command: use status or detach"
      : `Unknown command "${command}": use status or detach`;
  }
  const parsed: BpfArgs = { command, json: false, pinRoot: DEFAULT_PIN_ROOT };
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i]!;
    if (arg === "--json") {
      parsed.json = true;
    } else if (arg === "--pin-root" || arg.startsWith("--pin-root=")) {
      const value = arg === "--pin-root" ? rest[++i] : arg.slice(11);
      if (value === undefined || value === "") {
        return "Missing value for --pin-root: give a directory on a bpffs";
      }
      parsed.pinRoot = value.replace(/\/+$/, "") || "/";
    } else {
      return `Unknown option "${arg}"`;
    }
  }
  return parsed;
}
