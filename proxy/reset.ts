import { setLingerZero } from "../ffi/libc.ts";

/**
 * Deno keeps each socket's descriptor under this internal symbol. It is not
 * a public API, so every use checks that it is there and falls back.
 */
const FD_SYMBOL_NAME = "Deno.internal.fd";

let lingerAllowed: boolean | undefined;

/**
 * Closes a connection with a TCP reset (RST) instead of a FIN, so the peer
 * sees the same abort that the other side of the proxy saw.
 *
 * Needs the `ffi` permission to set `SO_LINGER` to zero through libc.
 * Without it the connection is closed with a FIN.
 *
 * @returns whether a reset was sent rather than a FIN
 */
export function resetConn(conn: Deno.TcpConn): boolean {
  let reset = false;
  const fd = socketFd(conn);
  if (fd !== undefined && canUseFfi()) {
    try {
      setLingerZero(fd);
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
  lingerAllowed ??= Deno.permissions.querySync({ name: "ffi" }).state ===
    "granted";
  return lingerAllowed;
}

function socketFd(conn: Deno.TcpConn): number | undefined {
  const symbol = Object.getOwnPropertySymbols(conn).find((s) =>
    s.description === FD_SYMBOL_NAME
  );
  if (symbol === undefined) return undefined;
  const fd: unknown = (conn as unknown as Record<symbol, unknown>)[symbol];
  return typeof fd === "number" && fd >= 0 ? fd : undefined;
}
