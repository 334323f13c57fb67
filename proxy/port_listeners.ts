import { getLogger } from "@logtape/logtape";
import type { ConnHandler, Frontend, PortRange } from "./frontend.ts";
import { acceptLoop } from "./accept_loop.ts";
import { formatHostPort } from "./address.ts";
import { expandRanges } from "./ports.ts";
import { isResourceExhausted } from "./os_error.ts";

const log = getLogger(["anyport", "listener"]);

/** Frontend that opens one listening socket per configured port. */
export class PortListeners implements Frontend {
  readonly hostname: string;
  readonly #onConn: ConnHandler;
  readonly #listeners = new Map<number, Deno.TcpListener>();

  /**
   * @param hostname address to bind, such as `"::"` for every IPv4 and IPv6
   * address, or `"127.0.0.1"`
   */
  constructor(hostname: string, onConn: ConnHandler) {
    this.hostname = hostname;
    this.#onConn = onConn;
  }

  /** Ports with an open listener, in ascending order. */
  get ports(): number[] {
    return [...this.#listeners.keys()].sort((a, b) => a - b);
  }

  async apply(ranges: readonly PortRange[]): Promise<void> {
    const requested = expandRanges(ranges);
    const opened: number[] = [];
    try {
      for (const port of requested) {
        if (this.#listeners.has(port)) continue;
        this.#listeners.set(port, this.#listen(port, requested.size));
        opened.push(port);
      }
    } catch (error) {
      for (const port of opened) this.#closePort(port);
      throw error;
    }
    for (const port of [...this.#listeners.keys()]) {
      if (!requested.has(port)) this.#closePort(port);
    }
    await Promise.resolve();
  }

  close(): Promise<void> {
    for (const port of [...this.#listeners.keys()]) this.#closePort(port);
    return Promise.resolve();
  }

  #listen(port: number, portCount: number): Deno.TcpListener {
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname: this.hostname, port });
    } catch (error) {
      const fix = isResourceExhausted(error)
        ? `${portCount} ports need as many descriptors, plus two per connection: raise the limit (ulimit -n, systemd LimitNOFILE) or use "Mode": "bpf", which needs one socket`
        : error instanceof Deno.errors.AddrInUse
        ? "stop the process that uses the port or remove the port from the config"
        : "check ListenAddress and the port";
      throw new Error(
        `Cannot listen on ${formatHostPort(this.hostname, port)}: ${
          (error as Error).message
        }; ${fix}`,
        { cause: error },
      );
    }
    acceptLoop(listener, (conn) => this.#onConn(conn, port), log);
    return listener;
  }

  #closePort(port: number) {
    const listener = this.#listeners.get(port);
    this.#listeners.delete(port);
    try {
      listener?.close();
    } catch {
      // Already closed.
    }
  }
}
