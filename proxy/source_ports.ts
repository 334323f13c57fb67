import { readSmallFile } from "../ffi/libc.ts";
import { EADDRNOTAVAIL, lastErrno, net } from "../ffi/net.ts";
import { PortCursor, type PortRange } from "./port_cursor.ts";

export type { PortRange } from "./port_cursor.ts";

/** Policy for the source ports of connections to targets. */
export type SourcePortPolicy = "rotate" | "kernel";

/** Every value of `SourcePorts`, in the order the error message lists them. */
export const SOURCE_PORT_POLICIES: readonly SourcePortPolicy[] = [
  "rotate",
  "kernel",
];

/** Socket option of Linux 6.3 and later that narrows `connect(2)`'s range. */
const IPPROTO_IP = 0;
const IP_LOCAL_PORT_RANGE = 51;

/**
 * Ports tried per connect before the kernel searches the whole range. A
 * port is refused when a live connection to the same target still uses it,
 * or when its TIME_WAIT socket is too young for `net.ipv4.tcp_tw_reuse`.
 * A refusal costs one `connect(2)` that fails early, much less than the
 * search. Every connect tries the cursor again: a period of the kernel's
 * choices would scatter young TIME_WAIT sockets over the range, and those
 * would refuse the cursor in turn.
 */
const PORT_TRIES = 4;

const RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range";

/**
 * Reads the ephemeral port range of the proxy's network namespace, or
 * returns `undefined` when the file is missing or unreadable.
 */
export function readPortRange(): PortRange | undefined {
  const text = readSmallFile(RANGE_FILE);
  if (text === undefined) return undefined;
  const [low, high] = text.trim().split(/\s+/).map(Number);
  if (
    low === undefined || high === undefined || !Number.isInteger(low) ||
    !Number.isInteger(high) || low < 1 || high > 65_535 || low > high
  ) {
    return undefined;
  }
  return { low, high };
}

/**
 * Hands out source ports for connections to targets, in turn per target
 * address, starting at a random port.
 *
 * Left to itself, `connect(2)` searches the ephemeral range for a port
 * whose four-tuple is free. When the client closes first, the proxy closes
 * first towards the target, so each connection leaves a TIME_WAIT socket
 * on its source port. At thousands of connections per second to one target
 * the search walks past many of them. With `bench/loadgen conn` through
 * anyport (2-core VM, Linux 6.18), `perf` put a fifth of the proxy's CPU
 * time in `__inet_hash_connect` and the checks it calls.
 *
 * Taking the ports in turn spaces the reuse of each port as far apart as
 * the range allows (`PortCursor` explains the order).
 * `IP_LOCAL_PORT_RANGE` narrows each socket's range to the chosen port, so
 * the kernel still checks it. It skips reserved ports and ports in use, and
 * reuses a TIME_WAIT port only as `net.ipv4.tcp_tw_reuse` allows. A refused
 * port costs one more `connect`. After `PORT_TRIES` refusals the kernel
 * searches its whole range as usual.
 *
 * NOTE: ports in turn are predictable, unlike the kernel's hashed choice
 * (RFC 6056). The policy `"kernel"` keeps the kernel's choice.
 */
export class SourcePorts {
  readonly #range: PortRange | undefined;
  /** Cursors by the encoded target address that `dial.ts` caches. */
  readonly #cursors = new WeakMap<Uint8Array, PortCursor>();
  readonly #option = new Uint32Array(1);
  readonly #optionBytes = new Uint8Array(this.#option.buffer);
  /** Unset once the kernel rejected `IP_LOCAL_PORT_RANGE`. */
  #supported = true;

  /** @param range the ports to hand out; `undefined` leaves every choice to the kernel */
  constructor(range: PortRange | undefined) {
    this.#range = range;
  }

  /** Whether connects choose their port here rather than in the kernel. */
  get active(): boolean {
    return this.#range !== undefined && this.#supported;
  }

  /**
   * Connects `fd` to `sockaddr` from the next source port for that address,
   * like `connect(2)`: returns 0, or -1 with the error in `lastErrno()`.
   * When every port tried was refused, the kernel chooses one.
   */
  connect(fd: number, sockaddr: Uint8Array<ArrayBuffer>, now: number): number {
    const symbols = net();
    const range = this.#range;
    if (range === undefined || !this.#supported) {
      return symbols.connect(fd, sockaddr, sockaddr.length);
    }
    let cursor = this.#cursors.get(sockaddr);
    if (cursor === undefined) {
      cursor = new PortCursor(range, now);
      this.#cursors.set(sockaddr, cursor);
    }
    // Both address families keep the port at bytes 2 and 3.
    const targetPort = (sockaddr[2]! << 8) | sockaddr[3]!;
    for (let tries = 0; tries < PORT_TRIES; tries++) {
      let port = cursor.take(now);
      // The same port towards a local address that nothing listens on
      // would connect the socket to itself (TCP simultaneous open).
      if (port === targetPort) port = cursor.take(now);
      if (!this.#narrow(fd, port | (port << 16))) {
        return symbols.connect(fd, sockaddr, sockaddr.length);
      }
      if (symbols.connect(fd, sockaddr, sockaddr.length) === 0) return 0;
      // A refused port leaves the socket unconnected, so it can try again.
      if (lastErrno() !== EADDRNOTAVAIL) return -1;
    }
    // Range 0 restores the namespace's range for the kernel's search.
    // NOTE: that search may pick the target's own port, as it does with
    // SourcePorts "kernel", and so connect to itself when nothing listens.
    this.#narrow(fd, 0);
    return symbols.connect(fd, sockaddr, sockaddr.length);
  }

  /**
   * Sets the socket's port range. Returns false, and turns rotation off for
   * good, when the kernel rejects the option: `ENOPROTOOPT` before Linux
   * 6.3, or `EINVAL` where a kernel wants the low bound below the high one,
   * as the man page states (6.18 takes equal bounds).
   */
  #narrow(fd: number, value: number): boolean {
    this.#option[0] = value;
    const result = net().setsockopt(
      fd,
      IPPROTO_IP,
      IP_LOCAL_PORT_RANGE,
      this.#optionBytes,
      4,
    );
    if (result === 0) return true;
    this.#supported = false;
    return false;
  }
}
