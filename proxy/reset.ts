import { abortConnection } from "../ffi/libc.ts";
import { findConnFd, findConnFdNear } from "../ffi/socket_fd.ts";

/**
 * Deno keeps the descriptor of accepted sockets under this internal symbol.
 * It is not a public API, so every use checks that it is there and falls
 * back. Sockets from `Deno.connect` do not carry it.
 */
const FD_SYMBOL_NAME = "Deno.internal.fd";

/** Descriptors probed on each side of the hint before a full scan. */
const NEAR_RADIUS = 64;

/**
 * Maximum full descriptor scans per second. A full scan reads /proc/self/fd
 * (which Deno allows only with `--allow-all`) and costs about 1 ms per
 * 5,000 descriptors, so the cap keeps a flood of resets from costing more
 * than a few percent of a core. Past it, the connection gets a FIN.
 */
const MAX_SCANS_PER_SECOND = 20;

let ffiGranted: boolean | undefined;
let scanWindowStart = 0;
let scansInWindow = 0;

/**
 * Closes a connection with a TCP reset (RST) instead of a FIN, so the peer
 * gets the same abort that the other side of the proxy got.
 *
 * Needs the `ffi` permission, because the reset is made through libc.
 * Without it the connection is closed with a FIN.
 *
 * @param hintFd descriptor of a socket opened around the same time, such as
 * the client's for a target connection, where the search starts
 * @returns whether a reset was sent rather than a FIN
 */
export function resetConn(conn: Deno.TcpConn, hintFd?: number): boolean {
  let reset = false;
  if (canUseFfi()) {
    const fd = connFd(conn) ?? searchFd(conn, hintFd);
    if (fd !== undefined) {
      try {
        abortConnection(fd);
        reset = true;
      } catch {
        // The descriptor may be gone already; a FIN is the remaining option.
      }
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

/** Returns the descriptor that Deno recorded for an accepted connection. */
export function connFd(conn: Deno.TcpConn): number | undefined {
  const symbol = Object.getOwnPropertySymbols(conn).find((s) =>
    s.description === FD_SYMBOL_NAME
  );
  const fd: unknown = symbol === undefined
    ? undefined
    : (conn as unknown as Record<symbol, unknown>)[symbol];
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}

function searchFd(
  conn: Deno.TcpConn,
  hintFd: number | undefined,
): number | undefined {
  try {
    if (hintFd !== undefined) {
      const near = findConnFdNear(conn, hintFd, NEAR_RADIUS);
      if (near !== undefined) return near;
    }
    const now = Date.now();
    if (now - scanWindowStart >= 1_000) {
      scanWindowStart = now;
      scansInWindow = 0;
    }
    if (++scansInWindow > MAX_SCANS_PER_SECOND) return undefined;
    return findConnFd(conn);
  } catch {
    // No read access to /proc/self/fd, or the socket is already gone.
    return undefined;
  }
}
