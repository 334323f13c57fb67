/**
 * Checks of the `errno` that a failed `recv(2)` or `send(2)` leaves, for the
 * data path.
 *
 * @module
 */
import { EAGAIN, EINTR, lastErrno, MSG_NOSIGNAL, net } from "./net.ts";

const MSG_PEEK = 0x2;
const MSG_DONTWAIT = 0x40;

const peekBuffer = new Uint8Array(1);

/**
 * Returns the errno of the `recv(2)` on `fd` that just returned -1, or
 * `EAGAIN` when a second look finds the connection still open.
 *
 * The errno read after a call through FFI is sometimes not the call's own.
 * A test made about 4 million `recv(2)` calls on an invalid descriptor per
 * run and read errno after each (Deno 2.9.6). In about every second run, one
 * read found `ENOENT` or `EAGAIN` instead of `EBADF`; the two that were timed
 * came 6 and 29 ms after the start. In the proxy, one came with the first
 * connects under load, 2 s after the start. The code that overwrites errno is
 * not known, and it is not seen once the process is warm. An `EAGAIN`
 * read as anything else would reset a healthy connection. So an error counts
 * only when a peek at the socket finds the connection ended too: after a real
 * error, `recv(2)` returns 0 or fails again, and on an open socket it returns
 * bytes or `EAGAIN`.
 */
export function recvErrno(fd: number): number {
  const code = lastErrno();
  if (code === EAGAIN || code === EINTR) return code;
  const peeked = net().recv(fd, peekBuffer, 1, MSG_PEEK | MSG_DONTWAIT);
  if (peeked > 0) return EAGAIN;
  if (peeked < 0) {
    const again = lastErrno();
    if (again === EAGAIN || again === EINTR) return EAGAIN;
  }
  return code;
}

/**
 * Returns the errno of the `send(2)` on `fd` that just returned -1, or
 * `EAGAIN` when a second look finds the connection still able to send. A
 * send of no bytes returns 0 on such a connection and fails on one that
 * ended. See {@linkcode recvErrno} for why errno needs the check.
 */
export function sendErrno(fd: number): number {
  const code = lastErrno();
  if (code === EAGAIN || code === EINTR) return code;
  const sent = net().send(fd, peekBuffer, 0, MSG_NOSIGNAL | MSG_DONTWAIT);
  return sent === 0 ? EAGAIN : code;
}
