import { abortConnection } from "../ffi/libc.ts";
import { findConnFd } from "../ffi/socket_fd.ts";

/**
 * Deno keeps each socket's descriptor under this internal symbol. It is not
 * a public API, so every use checks that it is there and falls back.
 */
const FD_SYMBOL_NAME = "Deno.internal.fd";

/**
 * Maximum descriptor scans per second. Deno reports the descriptor of
 * accepted connections but not of connections it opened, so resetting a
 * target connection scans the process's descriptors (about 1 ms per 5,000).
 * The cap keeps a flood of resets from costing more than a few percent of
 * a core; past it, target connections are closed with a FIN.
 */
const MAX_SCANS_PER_SECOND = 20;

let ffiGranted: boolean | undefined;
let scanWindowStart = 0;
let scansInWindow = 0;

/**
 * Closes a connection with a TCP reset (RST) instead of a FIN, so the peer
 * sees the same abort that the other side of the proxy saw.
 *
 * Needs the `ffi` permission, because the reset is made through libc.
 * Without it the connection is closed with a FIN.
 *
 * @returns whether a reset was sent rather than a FIN
 */
export function resetConn(conn: Deno.TcpConn): boolean {
  let reset = false;
  const fd = socketFd(conn);
  if (fd !== undefined && canUseFfi()) {
    try {
      abortConnection(fd);
      reset = true;
    } catch {
      // The descriptor may be gone already; a FIN is the remaining option.
    }
  }
  try {
    conn.close();
  } catch {
    // Already closed.
  }
  return reset;
}

/** Returns whether resets can be sent: the `ffi` permission is granted. */
export function canUseFfi(): boolean {
  ffiGranted ??= Deno.permissions.querySync({ name: "ffi" }).state ===
    "granted";
  return ffiGranted;
}

function socketFd(conn: Deno.TcpConn): number | undefined {
  const symbol = Object.getOwnPropertySymbols(conn).find((s) =>
    s.description === FD_SYMBOL_NAME
  );
  const fd: unknown = symbol === undefined
    ? undefined
    : (conn as unknown as Record<symbol, unknown>)[symbol];
  if (typeof fd === "number" && fd >= 0) return fd;
  return scanForFd(conn);
}

function scanForFd(conn: Deno.TcpConn): number | undefined {
  const now = Date.now();
  if (now - scanWindowStart >= 1_000) {
    scanWindowStart = now;
    scansInWindow = 0;
  }
  if (++scansInWindow > MAX_SCANS_PER_SECOND || !canUseFfi()) return undefined;
  try {
    return findConnFd(conn);
  } catch {
    // No read access to /proc/self/fd, or the socket is already gone.
    return undefined;
  }
}
