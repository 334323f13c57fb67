/**
 * Child processes of the benchmark: long-running services (backends and
 * proxies), one-shot tools that print JSON, and memory use of a process tree.
 */

/** Bytes of a service's stderr kept for error messages. */
const STDERR_TAIL_BYTES = 4096;

/** Time a service gets to exit after SIGTERM before it gets SIGKILL, in ms. */
const STOP_TIMEOUT_MS = 5_000;

/** A long-running child process whose stderr tail is kept for errors. */
export class Service {
  readonly name: string;
  /** Wall-clock time of the spawn, in ms since the epoch. */
  readonly spawnedAt: number;
  #child: Deno.ChildProcess;
  #stderr = "";
  #exit: Promise<Deno.CommandStatus>;
  #exited: Deno.CommandStatus | undefined;
  #exitController = new AbortController();
  #afterStop: (() => Promise<void>) | undefined;

  /**
   * Spawns `command`.
   *
   * @param afterStop runs once after the process has exited through
   * {@linkcode Service.stop}, to remove state that outlives the process
   */
  constructor(
    name: string,
    command: string,
    args: string[],
    afterStop?: () => Promise<void>,
  ) {
    this.#afterStop = afterStop;
    this.name = name;
    this.spawnedAt = Date.now();
    this.#child = new Deno.Command(command, {
      args,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.#keepStderrTail();
    this.#exit = this.#child.status.then((status) => {
      this.#exited = status;
      this.#exitController.abort();
      return status;
    });
  }

  get pid(): number {
    return this.#child.pid;
  }

  /** Exit status, or `undefined` while the process runs. */
  get exited(): Deno.CommandStatus | undefined {
    return this.#exited;
  }

  /** Signal that aborts when the process exits. */
  get exitSignal(): AbortSignal {
    return this.#exitController.signal;
  }

  /** Last bytes the process wrote to stderr. */
  get stderr(): string {
    return this.#stderr.trim();
  }

  async #keepStderrTail(): Promise<void> {
    const decoder = new TextDecoder();
    for await (const chunk of this.#child.stderr) {
      this.#stderr += decoder.decode(chunk, { stream: true });
      if (this.#stderr.length > STDERR_TAIL_BYTES) {
        this.#stderr = this.#stderr.slice(-STDERR_TAIL_BYTES);
      }
    }
  }

  /**
   * Stops (`SIGSTOP`) or continues (`SIGCONT`) the process and its
   * descendants. A stopped proxy uses no CPU while another one is measured.
   */
  signalTree(signal: "SIGSTOP" | "SIGCONT"): void {
    if (this.#exited) return;
    for (const pid of processTree(this.pid)) {
      try {
        Deno.kill(pid, signal);
      } catch (error) {
        // A descendant may exit between the listing and the signal.
        if (!(error instanceof Deno.errors.NotFound)) throw error;
      }
    }
  }

  /**
   * Sends SIGTERM and waits for the exit, sending SIGKILL after
   * {@linkcode STOP_TIMEOUT_MS}.
   *
   * @returns the exit status and whether SIGKILL was needed
   */
  async stop(): Promise<{ status: Deno.CommandStatus; killed: boolean }> {
    const result = await this.#terminate();
    const afterStop = this.#afterStop;
    this.#afterStop = undefined;
    await afterStop?.();
    return result;
  }

  async #terminate(): Promise<{ status: Deno.CommandStatus; killed: boolean }> {
    if (this.#exited) return { status: this.#exited, killed: false };
    // A stopped process would keep SIGTERM pending.
    this.signalTree("SIGCONT");
    this.#child.kill("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), STOP_TIMEOUT_MS);
    });
    const first = await Promise.race([this.#exit, timeout]);
    clearTimeout(timer);
    if (first !== "timeout") return { status: first, killed: false };
    this.#child.kill("SIGKILL");
    return { status: await this.#exit, killed: true };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
  }
}

/**
 * Runs a command to completion and parses its stdout, or else the last line
 * of its stdout, as JSON.
 *
 * @param timeoutMs the process gets SIGKILL after this long
 * @param signal the process gets SIGKILL when this signal aborts
 * @throws {Error} when the process fails or prints no JSON
 */
export async function runJson(
  command: string,
  args: string[],
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<Record<string, unknown>> {
  const timeout = AbortSignal.timeout(timeoutMs);
  const output = await new Deno.Command(command, {
    args,
    stdin: "null",
    signal: signal ? AbortSignal.any([timeout, signal]) : timeout,
  }).output();
  const stdout = new TextDecoder().decode(output.stdout).trim();
  const stderr = new TextDecoder().decode(output.stderr).trim();
  const last = stdout.split("\n").at(-1) ?? "";
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    // Not one JSON document: the result is the last line.
  }
  try {
    parsed ??= JSON.parse(last);
  } catch (error) {
    throw new Error(
      `Cannot parse the output of "${command} ${args.join(" ")}": ` +
        `exit code ${output.code}, stdout "${last}", stderr "${stderr}"`,
      { cause: error },
    );
  }
  if (typeof parsed !== "object" || parsed === null) {
    throw new Error(`Cannot read "${last}" from "${command}": not an object`);
  }
  return parsed as Record<string, unknown>;
}

/** Runs a command and returns its stdout and stderr, ignoring its exit code. */
export async function runText(
  command: string,
  args: string[],
): Promise<string> {
  try {
    const output = await new Deno.Command(command, { args }).output();
    const decoder = new TextDecoder();
    return (decoder.decode(output.stdout) + decoder.decode(output.stderr))
      .trim();
  } catch (error) {
    return `(cannot run ${command}: ${error})`;
  }
}

function parentPid(pid: number): number | undefined {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may contain spaces, so fields count from its ")".
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[1]);
  } catch {
    return undefined;
  }
}

/** Returns `pid` and the ids of all its descendants that are still alive. */
export function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of Deno.readDirSync("/proc")) {
    const child = Number(entry.name);
    if (!Number.isInteger(child)) continue;
    const parent = parentPid(child);
    if (parent === undefined) continue;
    children.set(parent, [...(children.get(parent) ?? []), child]);
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) {
    tree.push(...(children.get(tree[i]!) ?? []));
  }
  return tree;
}

function statusField(pid: number, field: string): number {
  try {
    const status = Deno.readTextFileSync(`/proc/${pid}/status`);
    const match = status.match(new RegExp(`^${field}:\\s+(\\d+)`, "m"));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** Resident set size summed over `pid` and its descendants, in KiB. */
export function treeRssKiB(pid: number): number {
  return processTree(pid).reduce((sum, p) => sum + statusField(p, "VmRSS"), 0);
}

/** Threads summed over `pid` and its descendants. */
export function treeThreads(pid: number): number {
  return processTree(pid).reduce(
    (sum, p) => sum + statusField(p, "Threads"),
    0,
  );
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
