/**
 * Accepting side of the proxy: the sockets that clients connect to.
 *
 * Two implementations exist. `PortListeners` opens one `Deno.listen` socket
 * per configured port. The BPF frontend opens one socket and steers every
 * configured port to it with an `sk_lookup` program. Both create their
 * sockets with `Deno.listen` and accept through the event loop.
 */

import type { Prefix } from "./prefix.ts";
import type { SocketAddress } from "./sockaddr.ts";

/**
 * Called for every accepted connection with its non-blocking descriptor,
 * which the callee then owns, its original destination port and the
 * client's address.
 */
export type ConnHandler = (
  fd: number,
  port: number,
  peer: SocketAddress | undefined,
  /**
   * The original destination address and port, where it comes for free:
   * in BPF mode, where one socket accepts for every steered address.
   */
  local?: SocketAddress,
) => void;

/** Set of configured ports, as sorted inclusive ranges without overlaps. */
export interface PortRange {
  first: number;
  last: number;
}

/** Sockets that accept client connections for a changing set of ports. */
export interface Frontend {
  /**
   * Starts accepting on `ports` and stops accepting on ports that are no
   * longer listed. Called once at start and again on every reload.
   * Ports that stay listed keep accepting without interruption. Frontends
   * that steer by destination address (BPF mode) steer `prefixes`, and the
   * others ignore them.
   *
   * @param commit switches the proxy's routes to the new config. The
   * frontend calls it once, right before the new ports can take
   * connections, and with no await in between, so a connection is routed by
   * the config that steered it. It is not called when the frontend fails
   * before that.
   * @throws {Error} when a port cannot be opened or steered. What the
   * failed call changed is undone, and the previous set keeps working.
   */
  apply(
    ports: readonly PortRange[],
    prefixes: readonly Prefix[],
    commit?: () => void,
  ): Promise<void>;

  /**
   * Stops accepting on every socket until {@linkcode resume}, keeping the
   * sockets open, so the kernel queues new connections in their backlogs.
   */
  pause(): void;

  /** Accepts again after {@linkcode pause}. */
  resume(): void;

  /** Number of listening sockets, which each hold a descriptor. */
  readonly socketCount: number;

  /** Stops accepting everywhere. Established connections are not touched. */
  close(): Promise<void>;
}
