/**
 * A check of the `errno` that a failed non-blocking `connect(2)` leaves.
 *
 * A fresh proxy process has read `ENOENT` after its first connect under
 * load, which `connect(2)` does not return for a TCP socket, and so marked
 * a healthy target down for a second. This was seen three times and the
 * cause is not known, so a value that `connect(2)` cannot return is checked
 * by calling `connect(2)` again.
 *
 * @module
 */
import { EINPROGRESS, lastErrno, net } from "../ffi/net.ts";

/** Error of a connect call while an earlier connect is in progress. */
const EALREADY = 114;
/** Error of a connect call on a connected socket. */
const EISCONN = 106;

/**
 * errno values that `connect(2)` can return for a TCP socket: those of its
 * man page, plus the memory and reset errors (an estimate).
 */
const CONNECT_ERRNOS = new Set([
  1, // EPERM
  4, // EINTR
  9, // EBADF
  11, // EAGAIN
  12, // ENOMEM
  13, // EACCES
  14, // EFAULT
  22, // EINVAL
  88, // ENOTSOCK
  91, // EPROTOTYPE
  97, // EAFNOSUPPORT
  98, // EADDRINUSE
  99, // EADDRNOTAVAIL
  100, // ENETDOWN
  101, // ENETUNREACH
  104, // ECONNRESET
  105, // ENOBUFS
  110, // ETIMEDOUT
  111, // ECONNREFUSED
  113, // EHOSTUNREACH
  EALREADY,
  EISCONN,
  EINPROGRESS,
]);

/**
 * Returns `code`, the errno of the `connect(2)` on `fd` that just returned
 * -1, unless `connect(2)` cannot return that value. Then it connects again:
 * that call fails with `EALREADY` while the first connect is in progress and
 * with `EISCONN` once it completed. Otherwise it is a new attempt, and its
 * errno is returned.
 *
 * @returns `EINPROGRESS` while the connect is in progress, 0 once the
 * socket is connected, else the errno of the failure
 */
export function checkConnectErrno(
  fd: number,
  sockaddr: Uint8Array<ArrayBuffer>,
  code: number,
): number {
  if (CONNECT_ERRNOS.has(code)) return code;
  if (net().connect(fd, sockaddr, sockaddr.length) === 0) return 0;
  const again = lastErrno();
  if (again === EALREADY) return EINPROGRESS;
  if (again === EISCONN) return 0;
  return again;
}
