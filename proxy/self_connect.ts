import { net } from "../ffi/net.ts";
import { decodeSockAddr, SOCKADDR_SIZE } from "./sockaddr.ts";
import type { SocketAddress } from "./sockaddr.ts";
import type { DialControl } from "./dial.ts";

/**
 * Time a connection to one of the proxy's own port numbers stays on record,
 * in ms. A connection that loops back is accepted within milliseconds.
 */
const RECORD_MS = 10_000;

/** The target connection that came back. */
export interface LoopedTarget {
  app: string;
  /**
   * Names of the apps that the connection went through in this proxy, the
   * one that made it last. A connection that comes back to one of them is a
   * loop. One that goes on to another app is a chain.
   */
  chain: readonly string[];
  /** The target as written in the config, for the error message. */
  target: string;
  /** The connect that made the connection, which then counts as failed. */
  dial: DialControl;
}

const address = new Uint8Array(SOCKADDR_SIZE);
const addressLength = new Uint32Array(1);
const addressLengthBytes = new Uint8Array(addressLength.buffer);

/**
 * Connections that the proxy opens to its own port numbers, by local
 * address, so that one coming back to the proxy is found at accept.
 *
 * The config check rejects targets that loop back through loopback
 * addresses, but it cannot see every loop: a name that resolves to a local
 * address, or a local address inside the steered prefixes. Without this
 * check one client connection would make the proxy connect to itself until
 * it runs out of descriptors, taking every app down. Connections to other
 * port numbers cannot loop and cost nothing here; one to a served port
 * number costs a `getsockname(2)`.
 */
export class SelfConnections {
  readonly #serves: (port: number) => boolean;
  readonly #recent = new Map<string, LoopedTarget & { until: number }>();

  /** @param serves returns whether the proxy accepts on a port number */
  constructor(serves: (port: number) => boolean) {
    this.#serves = serves;
  }

  /** Number of connections on record; 0 spares the check at accept. */
  get size(): number {
    return this.#recent.size;
  }

  /**
   * Records socket `fd`, just connecting to port `port`, when the proxy
   * serves that port number.
   */
  noteConnect(fd: number, port: number, looped: () => LoopedTarget): void {
    if (!this.#serves(port)) return;
    addressLength[0] = SOCKADDR_SIZE;
    if (net().getsockname(fd, address, addressLengthBytes) < 0) return;
    const local = decodeSockAddr(address);
    if (local === undefined) return;
    const now = Date.now();
    this.#sweep(now);
    this.#recent.set(local.label, { ...looped(), until: now + RECORD_MS });
  }

  /**
   * Returns the recorded target connection whose local address is `peer`,
   * and removes it from the record. Returns `undefined` for any other peer.
   */
  take(peer: SocketAddress): LoopedTarget | undefined {
    const key = peer.label;
    const found = this.#recent.get(key);
    if (found === undefined) return undefined;
    this.#recent.delete(key);
    return found.until >= Date.now() ? found : undefined;
  }

  #sweep(now: number) {
    for (const [key, entry] of this.#recent) {
      // A Map iterates in insertion order, which is expiry order here.
      if (entry.until >= now) break;
      this.#recent.delete(key);
    }
  }
}
