import type { Logger } from "@logtape/logtape";
import { LogRateLimiter } from "./rate_limit.ts";

/** Pause after an accept error such as EMFILE, before accepting again, in ms. */
const ACCEPT_ERROR_PAUSE_MS = 100;

const limiter = new LogRateLimiter();

/**
 * Accepts connections until the listener is closed, passing each to
 * `onConn`. Accept errors such as running out of descriptors (EMFILE) are
 * logged, rate-limited, and followed by a short pause instead of ending the
 * loop. Closing the listener ends the loop quietly.
 */
export async function acceptLoop(
  listener: Deno.TcpListener,
  onConn: (conn: Deno.TcpConn) => void,
  log: Logger,
): Promise<void> {
  for (;;) {
    let conn: Deno.TcpConn;
    try {
      conn = await listener.accept();
    } catch (error) {
      if (isListenerClosed(error)) return;
      const address = listener.addr as Deno.NetAddr;
      const suppressed = limiter.allow(`accept:${address.port}`, Date.now());
      if (suppressed >= 0) {
        log.error("Accept failed on port {port}: {error}", {
          port: address.port,
          error: (error as Error).message,
          suppressed,
        });
      }
      await new Promise((resolve) =>
        setTimeout(resolve, ACCEPT_ERROR_PAUSE_MS)
      );
      continue;
    }
    onConn(conn);
  }
}

function isListenerClosed(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted;
}
