/**
 * Checks of the `errno` that a failed `recv(2)` or `send(2)` leaves, for the
 * data path.
 *
 * NOTE: these checks work around the problem at the calls that decide what
 * happens to a connection. Reading errno inside the native call, through a
 * small C library of anyport's own, would remove it at the root; anyport
 * loads only the system's libc so far.
 *
 * @module
 */
import { EAGAIN, isRetry, lastErrno, MSG_NOSIGNAL, net } from "./net.ts";

const MSG_PEEK = 0x2;
const MSG_DONTWAIT = 0x40;

/** Buffer of the second look: one byte to peek into, or none to send. */
const oneByte = new Uint8Array(1);

/**
 * Returns the errno of the `recv(2)` on `fd` that just returned -1, or
 * `EAGAIN` when a second look finds the connection still open.
 *
 * The errno read after a call through FFI is sometimes not the call's own.
 * A test made about 4 million `recv(2)` calls on an invalid descriptor per
 * run and read errno after each (Deno 2.9.6). In 4 of 9 runs, one read found
 * `ENOENT` or `EAGAIN` instead of `EBADF`. The two that were timed came 6 and
 * 29 ms after the start. In the proxy, one came with the first
 * connects under load, 2 s after the start. The code that overwrites errno is
 * not known, and it is not seen once the process is warm. An `EAGAIN`
 * read as anything else would reset a healthy connection. So an error counts
 * only when a peek at the socket finds the connection ended too: after a real
 * error, `recv(2)` returns 0 or fails again, and on an open socket it returns
 * bytes or `EAGAIN`.
 */
export function recvErrno(fd: number): number {
  const code = lastErrno();
  if (isRetry(code)) return code;
  const peeked = net().recv(fd, oneByte, 1, MSG_PEEK | MSG_DONTWAIT);
  if (peeked > 0) return EAGAIN;
  if (peeked < 0 && isRetry(lastErrno())) return EAGAIN;
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
  if (isRetry(code)) return code;
  const sent = net().send(fd, oneByte, 0, MSG_NOSIGNAL | MSG_DONTWAIT);
  return sent === 0 ? EAGAIN : code;
}
