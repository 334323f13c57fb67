import { getLogger } from "@logtape/logtape";
import type { ConnHandler, Frontend, PortRange } from "./frontend.ts";
import { Acceptor } from "./acceptor.ts";
import type { EventLoop } from "./event_loop.ts";
import { findListenerFd } from "../ffi/socket_fd.ts";
import { formatHostPort } from "./address.ts";
import { expandRanges } from "./ports.ts";
import { isResourceExhausted } from "./os_error.ts";
import { counted, firstOf } from "./plural.ts";
import { readLocalListeners } from "./local_listeners.ts";
import { descriptorLimit } from "../ffi/net.ts";
import { parseAddress } from "./prefix.ts";
import { unmapped } from "./sockaddr.ts";

const log = getLogger(["anyport", "listener"]);

/** An open listener and what accepts on it. */
interface Listening {
  listener: Deno.TcpListener;
  acceptor: Acceptor;
}

/** Frontend that opens one listening socket per configured port. */
export class PortListeners implements Frontend {
  readonly hostname: string;
  readonly #loop: EventLoop;
  readonly #onConn: ConnHandler;
  readonly #listeners = new Map<number, Listening>();
  /** Descriptor of the listener opened last, where the next one is sought. */
  #lastFd: number | undefined;
  /** Whether {@linkcode pause} stopped accepting. New listeners then start paused. */
  #paused = false;

  /**
   * @param hostname address to bind, such as `"::"` for every IPv4 and IPv6
   * address, or `"127.0.0.1"`
   */
  constructor(hostname: string, loop: EventLoop, onConn: ConnHandler) {
    this.hostname = hostname;
    this.#loop = loop;
    this.#onConn = onConn;
  }

  /** Ports with an open listener, in ascending order. */
  get ports(): number[] {
    return [...this.#listeners.keys()].sort((a, b) => a - b);
  }

  async apply(
    ranges: readonly PortRange[],
    _prefixes?: unknown,
    commit?: () => void,
  ): Promise<void> {
    const requested = expandRanges(ranges);
    const limit = descriptorLimit();
    if (requested.size >= limit) {
      // Opening listeners up to the limit would hold the thread for a while
      // and fail anyway, and a retry could never succeed.
      throw new Error(
        `Cannot listen on ${
          counted(requested.size, "port")
        }: each needs a descriptor, and the open-file limit is ${limit}. Raise the limit (ulimit -n, systemd LimitNOFILE) well above the port count, or use "Mode": "bpf", which serves every port with one socket`,
      );
    }
    // Listeners accept through the event loop, which runs only after this
    // returns, so routes may switch before the first new listener opens.
    commit?.();
    const opened: number[] = [];
    try {
      for (const port of requested) {
        if (this.#listeners.has(port)) continue;
        this.#listeners.set(port, this.#listen(port, requested));
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

  get socketCount(): number {
    return this.#listeners.size;
  }

  pause(): void {
    this.#paused = true;
    for (const { acceptor } of this.#listeners.values()) acceptor.pause();
  }

  resume(): void {
    this.#paused = false;
    for (const { acceptor } of this.#listeners.values()) acceptor.resume();
  }

  close(): Promise<void> {
    for (const port of [...this.#listeners.keys()]) this.#closePort(port);
    return Promise.resolve();
  }

  #listen(port: number, requested: ReadonlySet<number>): Listening {
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname: this.hostname, port });
    } catch (error) {
      const fix = error instanceof Deno.errors.AddrNotAvailable
        ? `ListenAddress ${this.hostname} is not an address of this host: use one of its addresses, or "::" for all of them`
        : isResourceExhausted(error)
        ? `${
          counted(requested.size, "port")
        } need as many descriptors, plus two per connection: raise the limit (ulimit -n, systemd LimitNOFILE) or use "Mode": "bpf", which serves every port with one socket`
        : error instanceof Deno.errors.AddrInUse
        ? addressInUseFix(this.hostname, port, requested, this.#listeners)
        : "check ListenAddress and the port";
      throw new Error(
        `Cannot listen on ${formatHostPort(this.hostname, port)}: ${
          (error as Error).message
        }; ${fix}`,
        { cause: error },
      );
    }
    try {
      const fd = findListenerFd(listener, this.#lastFd);
      this.#lastFd = fd;
      const acceptor = new Acceptor(
        this.#loop,
        fd,
        (conn, peer) => this.#onConn(conn, port, peer),
        log,
        `port ${port}`,
      );
      if (this.#paused) acceptor.pause();
      return { listener, acceptor };
    } catch (error) {
      listener.close();
      throw new Error(
        `Cannot accept on ${formatHostPort(this.hostname, port)}: ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
  }

  #closePort(port: number) {
    const listening = this.#listeners.get(port);
    this.#listeners.delete(port);
    listening?.acceptor.close();
    try {
      listening?.listener.close();
    } catch {
      // Already closed.
    }
  }
}

/**
 * Returns what to do about a port in use, naming every configured port that
 * another socket listens on, so that one restart finds them all. With no
 * socket listening on the port, connections of this host use it as their
 * local port, which happens to app ports inside the ephemeral port range,
 * for example after BPF mode, where nothing listens on them.
 */
function addressInUseFix(
  hostname: string,
  port: number,
  requested: ReadonlySet<number>,
  own: ReadonlyMap<number, unknown>,
): string {
  const bound = addressKey(parseAddress(hostname) ?? []);
  const wildcard = (key: string) => /^[0.]*$/.test(key);
  let busy: number[] | undefined;
  try {
    busy = [
      ...new Set(
        readLocalListeners()
          .filter((listener) => {
            const key = addressKey(listener.address);
            return wildcard(bound) || wildcard(key) || key === bound;
          })
          .map((listener) => listener.port)
          .filter((p) => requested.has(p) && !own.has(p)),
      ),
    ].sort((a, b) => a - b);
  } catch {
    // Without sock_diag, the usual cause is the likely one.
  }
  if (busy === undefined) {
    return "stop the process that uses the port or remove the port from the config";
  }
  if (busy.length > 1) {
    return `other sockets listen on ${
      counted(busy.length, "configured port")
    } (${
      firstOf(busy.map(String), 16)
    }): stop the processes that use them or remove those ports from the config`;
  }
  return busy.includes(port)
    ? "stop the process that uses the port or remove the port from the config"
    : "no socket listens on it, so connections, open or in TIME_WAIT, use it " +
      "as their local port: reserve the app ports with " +
      "net.ipv4.ip_local_reserved_ports, or move them out of " +
      "net.ipv4.ip_local_port_range";
}

/** Returns an address's bytes, IPv4-mapped ones as IPv4, joined with dots. */
function addressKey(bytes: ArrayLike<number>): string {
  return unmapped(Array.from(bytes)).join(".");
}
