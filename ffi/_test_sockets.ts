/**
 * Loopback TCP sockets as raw descriptors, for tests of the calls in
 * `ffi/net.ts` and of the data path.
 *
 * @module
 */
import assert from "node:assert/strict";
import { findListenerFd } from "./socket_fd.ts";
import { encodeSockAddr } from "../proxy/sockaddr.ts";
import {
  lastErrno,
  net,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
} from "./net.ts";

const AF_INET = 2;

/** Returns the descriptor of `listener`, found by probing. */
export function listenerFd(listener: Deno.TcpListener): number {
  const fd = findListenerFd(listener);
  assert.ok(fd !== undefined, "no descriptor for the listener");
  return fd;
}

/**
 * Opens a connected loopback TCP pair as two nonblocking descriptors: the
 * connecting side, then the side that `fd`, the descriptor of `listener`,
 * accepted.
 */
export function tcpPair(
  listener: Deno.TcpListener,
  fd: number,
): [number, number] {
  const symbols = net();
  const out = symbols.socket(
    AF_INET,
    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    0,
  );
  assert.ok(out >= 0, `socket failed with errno ${lastErrno()}`);
  const address = encodeSockAddr(
    new Uint8Array([127, 0, 0, 1]),
    listener.addr.port,
  );
  // The loopback handshake completes within connect(2), though a
  // nonblocking socket still reports EINPROGRESS.
  symbols.connect(out, address, address.length);
  const accepted = symbols.accept4(
    fd,
    null,
    null,
    SOCK_NONBLOCK | SOCK_CLOEXEC,
  );
  assert.ok(accepted >= 0, `accept4 failed with errno ${lastErrno()}`);
  return [out, accepted];
}
