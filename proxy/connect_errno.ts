/**
 * A check of the `errno` that a failed non-blocking `connect(2)` leaves.
 *
 * The errno read after a call through FFI is sometimes not the call's own
 * (`recvErrno` in `ffi/socket_errno.ts` has the measurement). A fresh proxy process read
 * `ENOENT` and, in another run, `EAGAIN` after its first connects under load,
 * and so marked a healthy target down for a second, failing every client
 * sent to it meanwhile. So every error other than `EINPROGRESS` is checked by
 * calling `connect(2)` again. It costs one system call on a path that fails
 * anyway.
 *
 * @module
 */
import { EINPROGRESS, lastErrno, net } from "../ffi/net.ts";

/** Error of a connect call while an earlier connect is in progress. */
const EALREADY = 114;
/** Error of a connect call on a connected socket. */
const EISCONN = 106;

/**
 * Returns the outcome of the `connect(2)` on `fd` that just returned -1 with
 * errno `code`. Any code but `EINPROGRESS` is checked by connecting again:
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
  if (code === EINPROGRESS) return code;
  if (net().connect(fd, sockaddr, sockaddr.length) === 0) return 0;
  const again = lastErrno();
  if (again === EALREADY) return EINPROGRESS;
  if (again === EISCONN) return 0;
  return again;
}
