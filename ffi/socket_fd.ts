/**
 * Finds the descriptor behind a Deno socket. Deno does not expose it, so the
 * process's descriptors are scanned for the socket with the same addresses.
 *
 * Needs the `ffi` permission only: descriptors are probed with
 * `getsockname(2)`, not listed from `/proc`.
 *
 * @module
 */

import { parseAddress } from "../proxy/prefix.ts";
import { getSockOptInt, SO_ACCEPTCONN, SOL_SOCKET } from "./libc.ts";
import { net } from "./net.ts";
import { descriptorLimit } from "./net.ts";

const AF_INET = 2;
const AF_INET6 = 10;
/** Descriptors probed after a hint before scanning them all. */
const HINT_PROBES = 64;
/** Size of `struct sockaddr_storage`. */
const SOCKADDR_SIZE = 128;

/** Socket address as the kernel reports it. */
export interface SockAddr {
  family: number;
  port: number;
  /** 4 bytes for IPv4, 16 for IPv6, in network byte order. */
  address: Uint8Array;
}

/**
 * Returns the descriptor of a TCP listener: the one listening socket whose
 * local address equals `listener.addr`.
 *
 * @param hint descriptor of the listener opened just before, if any; the
 * search starts after it
 * @throws {Error} when no descriptor or more than one matches
 */
export function findListenerFd(
  listener: Deno.TcpListener,
  hint?: number,
): number {
  const local = toSockAddr(listener.addr);
  const matches = (fd: number) =>
    sameAddr(getSockName(fd), local) &&
    getSockOptInt(fd, SOL_SOCKET, SO_ACCEPTCONN, 4) === 1n;
  // The kernel hands out the lowest free descriptor, so listeners opened
  // one after another usually get consecutive ones, and the first one a low
  // one: a few probes spare a scan of every descriptor.
  const start = hint ?? -1;
  for (let fd = start + 1; fd <= start + HINT_PROBES; fd++) {
    if (matches(fd)) return fd;
  }
  return single(
    socketFds().filter(matches),
    `listener ${formatAddr(listener.addr)}`,
  );
}

/** Returns the local address of socket `fd`, or `undefined` if not a socket. */
export function getSockName(fd: number): SockAddr | undefined {
  return readName(fd, "getsockname");
}

function readName(fd: number, call: "getsockname"): SockAddr | undefined {
  const buffer = new Uint8Array(SOCKADDR_SIZE);
  const length = new Uint32Array([SOCKADDR_SIZE]);
  if (net()[call](fd, buffer, length) < 0) return undefined;
  const view = new DataView(buffer.buffer);
  const family = view.getUint16(0, true);
  const port = view.getUint16(2, false);
  if (family === AF_INET) {
    return { family, port, address: buffer.slice(4, 8) };
  }
  if (family === AF_INET6) {
    return { family, port, address: buffer.slice(8, 24) };
  }
  return { family, port, address: new Uint8Array() };
}

/**
 * Lists the process's open descriptors that are sockets, by probing every
 * descriptor number below the open-files limit.
 */
function socketFds(): number[] {
  const fds: number[] = [];
  const limit = descriptorLimit();
  for (let fd = 0; fd < limit; fd++) {
    if (getSockName(fd) !== undefined) fds.push(fd);
  }
  return fds;
}

function toSockAddr(addr: Deno.NetAddr): SockAddr {
  const address = parseAddress(addr.hostname);
  if (address === undefined) {
    throw new TypeError(`Cannot parse socket address "${addr.hostname}"`);
  }
  const family = address.length === 4 ? AF_INET : AF_INET6;
  return { family, port: addr.port, address };
}

function sameAddr(got: SockAddr | undefined, want: SockAddr): boolean {
  if (got === undefined) return false;
  if (got.family !== want.family || got.port !== want.port) return false;
  return got.address.every((byte, i) => byte === want.address[i]);
}

function single(fds: number[], description: string): number {
  const [fd] = fds;
  if (fd === undefined) {
    throw new Error(
      `Cannot find the descriptor of ${description}: no socket matches`,
    );
  }
  if (fds.length > 1) {
    throw new Error(
      `Cannot find the descriptor of ${description}: descriptors ${
        fds.join(", ")
      } all match`,
    );
  }
  return fd;
}

function formatAddr(addr: Deno.NetAddr): string {
  return addr.hostname.includes(":")
    ? `[${addr.hostname}]:${addr.port}`
    : `${addr.hostname}:${addr.port}`;
}
