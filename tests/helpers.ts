/**
 * Test helpers: echo and sink servers, an in-process proxy, a proxy in a
 * child process, and small socket utilities. Everything listens on loopback.
 *
 * @module
 */
import assert from "node:assert/strict";
import { type Config, parseConfig } from "../proxy/config.ts";
import { PortListeners } from "../proxy/port_listeners.ts";
import { Proxy } from "../proxy/proxy.ts";

/** Directory of the repository, for starting main.ts in a child process. */
export const ROOT = new URL("..", import.meta.url).pathname;

/** TCP server on loopback that tracks and closes its connections. */
export class TestServer implements AsyncDisposable {
  readonly listener: Deno.TcpListener;
  readonly conns = new Set<Deno.TcpConn>();
  /** Connections accepted so far. */
  accepted = 0;
  readonly #loop: Promise<void>;

  constructor(
    handler: (conn: Deno.TcpConn) => Promise<void>,
    hostname = "127.0.0.1",
    port = 0,
  ) {
    const listener = Deno.listen({ hostname, port });
    this.listener = listener;
    this.#loop = (async () => {
      for await (const conn of listener) {
        this.accepted++;
        this.conns.add(conn);
        handler(conn).catch(() => {}).finally(() => {
          this.conns.delete(conn);
          closeQuietly(conn);
        });
      }
    })().catch(() => {});
  }

  get port(): number {
    return (this.listener.addr as Deno.NetAddr).port;
  }

  /** The server's address as a config target, such as `127.0.0.1:4000`. */
  get target(): string {
    const { hostname, port } = this.listener.addr as Deno.NetAddr;
    return hostname.includes(":")
      ? `[${hostname}]:${port}`
      : `${hostname}:${port}`;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    closeQuietly(this.listener);
    for (const conn of this.conns) closeQuietly(conn);
    await this.#loop;
  }
}

/** Echo server: writes back every byte and half-closes after the client does. */
export function echoServer(hostname = "127.0.0.1", port = 0): TestServer {
  return new TestServer(
    async (conn) => {
      const buffer = new Uint8Array(64 * 1024);
      for (;;) {
        const n = await conn.read(buffer);
        if (n === null) break;
        await writeAll(conn, buffer.subarray(0, n));
      }
      await conn.closeWrite();
    },
    hostname,
    port,
  );
}

/** Server that replies with its own name, to tell targets apart. */
export function nameServer(name: string): TestServer {
  return new TestServer(async (conn) => {
    await writeAll(conn, new TextEncoder().encode(name));
    await conn.closeWrite();
    await drain(conn);
  });
}

/** Returns a port that was free on `hostname` a moment ago. */
export function freePort(hostname = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Returns `count` distinct free ports. */
export function freePorts(count: number, hostname = "127.0.0.1"): number[] {
  const listeners = Array.from(
    { length: count },
    () => Deno.listen({ hostname, port: 0 }),
  );
  const ports = listeners.map((l) => (l.addr as Deno.NetAddr).port);
  for (const l of listeners) l.close();
  return ports;
}

/** In-process proxy for a config object, closed by `await using`. */
export class TestProxy implements AsyncDisposable {
  readonly proxy: Proxy;

  private constructor(proxy: Proxy) {
    this.proxy = proxy;
  }

  static async start(config: unknown): Promise<TestProxy> {
    const parsed = parseConfig(JSON.stringify(config), "test config");
    const proxy = await Proxy.start(
      parsed,
      (c: Config, loop, onConn) =>
        new PortListeners(c.settings.listenAddress, loop, onConn),
    );
    return new TestProxy(proxy);
  }

  async reload(config: unknown): Promise<string[]> {
    return await this.proxy.reload(parseConfig(JSON.stringify(config)));
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.proxy.stop();
  }
}

/** Settings that keep tests fast: short timeouts, loopback only. */
export const FAST_SETTINGS = {
  ListenAddress: "127.0.0.1",
  ConnectTimeoutMs: 500,
  BackoffMs: 2_000,
  DrainTimeoutMs: 1_000,
} as const;

/** Connects to a loopback port. */
export function connect(
  port: number,
  hostname = "127.0.0.1",
): Promise<Deno.TcpConn> {
  return Deno.connect({ hostname, port });
}

/** Writes all of `data`. */
export async function writeAll(
  conn: Deno.Conn,
  data: Uint8Array,
): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    offset += await conn.write(data.subarray(offset));
  }
}

/** Reads until the peer closes its write side, and returns the bytes. */
export async function readAll(conn: Deno.Conn): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(64 * 1024);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  const out = new Uint8Array(chunks.reduce((sum, c) => sum + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    out.set(chunk, offset);
    offset += chunk.length;
  }
  return out;
}

/** How a read to the end went: bytes read, and the error that ended it. */
export interface ReadEnd {
  received: number;
  /** The read error, such as `ConnectionReset`; `undefined` after EOF. */
  error: unknown;
}

/**
 * Asserts that a client read `expected` bytes and then a reset, as after a
 * reply that a target sent just before its reset.
 */
export function assertReplyThenReset(
  end: ReadEnd,
  expected: number,
  label: string,
): void {
  assert.equal(end.received, expected, label);
  assert.ok(
    end.error instanceof Deno.errors.ConnectionReset,
    `${label}: client saw ${end.error}; want ConnectionReset`,
  );
}

/** Reads and discards until EOF or an error, and returns which it was. */
export async function readToEnd(conn: Deno.Conn): Promise<ReadEnd> {
  const buffer = new Uint8Array(64 * 1024);
  let received = 0;
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) return { received, error: undefined };
      received += n;
    }
  } catch (error) {
    return { received, error };
  }
}

/** Reads and discards until the peer closes; returns the byte count. */
export async function drain(conn: Deno.Conn): Promise<number> {
  const buffer = new Uint8Array(64 * 1024);
  let total = 0;
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) return total;
    total += n;
  }
}

/** Sends `text`, half-closes, and returns the whole reply as text. */
export async function roundTrip(
  port: number,
  text: string,
  hostname = "127.0.0.1",
): Promise<string> {
  const conn = await connect(port, hostname);
  try {
    await writeAll(conn, new TextEncoder().encode(text));
    await conn.closeWrite();
    return new TextDecoder().decode(await readAll(conn));
  } finally {
    closeQuietly(conn);
  }
}

export function closeQuietly(closer: { close(): void }): void {
  try {
    closer.close();
  } catch {
    // Already closed.
  }
}

/** Resolves after `ms` milliseconds. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Polls `check` every 20 ms until it returns true or `timeoutMs` passes. */
export async function waitFor(
  check: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) {
      throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    }
    await delay(20);
  }
}

/** Returns whether a TCP connect to the port succeeds now. */
export async function accepts(
  port: number,
  hostname = "127.0.0.1",
): Promise<boolean> {
  try {
    const conn = await Deno.connect({ hostname, port });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/** Returns whether this process is root, as namespace and nftables tests need. */
export function isRoot(): boolean {
  return Deno.uid() === 0;
}

/** anyport running as a child process, with its standard error collected. */
export class ProxyProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  readonly configPath: string;
  stderr = "";
  readonly #stderrDone: Promise<void>;
  /** Set while standard error is not read; see `pauseStderr`. */
  #paused: Promise<void> | undefined;
  #resume: (() => void) | undefined;

  /**
   * @param maxFiles when set, the child's limit of open descriptors
   * (`ulimit -n`), to test running out of them
   * @param permissions Deno permission flags; BPF mode needs `--allow-all`
   */
  constructor(
    configPath: string,
    extraArgs: string[] = [],
    maxFiles?: number,
    permissions = ["--allow-net", "--allow-read", "--allow-ffi"],
  ) {
    this.configPath = configPath;
    const deno = [
      Deno.execPath(),
      "run",
      ...permissions,
      `${ROOT}main.ts`,
      "--config",
      configPath,
      ...extraArgs,
    ];
    const [command, ...args] = maxFiles === undefined
      ? deno
      : ["sh", "-c", `ulimit -n ${maxFiles} && exec "$@"`, "sh", ...deno];
    const child = new Deno.Command(command!, {
      args,
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    this.child = child;
    this.#stderrDone = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of child.stderr) {
        this.stderr += decoder.decode(chunk, { stream: true });
        if (this.#paused !== undefined) await this.#paused;
      }
    })();
  }

  /**
   * Stops reading the child's standard error, so that its pipe fills up as
   * with a stalled log collector, until the returned function is called.
   */
  pauseStderr(): () => void {
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#paused = promise;
    this.#resume = () => {
      this.#paused = undefined;
      this.#resume = undefined;
      resolve();
    };
    return this.#resume;
  }

  /**
   * Waits until a log line matches `pattern`.
   *
   * @throws {Error} after `timeoutMs`, with the last lines of the log
   */
  async waitForLog(pattern: RegExp, timeoutMs = 10_000): Promise<void> {
    try {
      await waitFor(
        () => pattern.test(this.stderr),
        timeoutMs,
        `log line ${pattern}`,
      );
    } catch (error) {
      const tail = this.stderr.split("\n").slice(-10).join("\n");
      throw new Error(`${(error as Error).message}; the log ends:\n${tail}`);
    }
  }

  /** Resident set size of the process, in bytes. */
  async rss(): Promise<number> {
    const status = await Deno.readTextFile(`/proc/${this.child.pid}/status`);
    const kb = /VmRSS:\s+(\d+) kB/.exec(status)?.[1];
    if (kb === undefined) throw new Error("VmRSS missing from /proc status");
    return Number(kb) * 1024;
  }

  /** Number of open file descriptors of the process. */
  async fdCount(): Promise<number> {
    let count = 0;
    for await (const _ of Deno.readDir(`/proc/${this.child.pid}/fd`)) count++;
    return count;
  }

  /** Sends a signal and waits for the exit code. */
  async stop(signal: Deno.Signal = "SIGTERM"): Promise<number> {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
    const status = await this.child.status;
    this.#resume?.();
    await this.#stderrDone;
    return status.code;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

/** Writes a config object to a new temporary file and returns its path. */
export async function writeConfigFile(
  config: unknown,
  dir?: string,
): Promise<string> {
  const directory = dir ?? await Deno.makeTempDir({ prefix: "anyport-test-" });
  const path = `${directory}/config.json`;
  await Deno.writeTextFile(path, JSON.stringify(config, null, 2));
  return path;
}

/** Returns whether this process is root in a network namespace with only loopback. */
export function inTestNamespace(): boolean {
  if (!isRoot()) return false;
  const interfaces = Deno.readTextFileSync("/proc/self/net/dev")
    .split("\n")
    .slice(2)
    .map((line) => line.split(":")[0]?.trim())
    .filter((name) => name !== undefined && name !== "");
  return interfaces.every((name) => name === "lo");
}
