import type { Logger } from "@logtape/logtape";
import { isResourceExhausted } from "./os_error.ts";
import { LogRateLimiter, withSuppressed } from "./rate_limit.ts";

/**
 * Pause after an accept error that means a local resource ran out, such as
 * EMFILE, before accepting again, in ms. Accepting at once would fail again
 * in a busy loop.
 */
const RESOURCE_PAUSE_MS = 100;

const limiter = new LogRateLimiter();

/**
 * Accepts connections until the listener is closed, passing each to
 * `onConn`. Accept errors are logged, rate-limited, and never end the loop.
 * Errors of one connection (a client that reset before the accept, ENOTCONN
 * or ECONNABORTED) are skipped at once. Running out of descriptors or
 * memory (EMFILE, ENFILE, ENOMEM, ENOBUFS) adds a short pause, so the loop
 * does not spin while nothing can be accepted. Closing the listener ends the
 * loop quietly.
 *
 * @param socketLabel names the listener in logs, by default `port N`
 */
export async function acceptLoop(
  listener: Deno.TcpListener,
  onConn: (conn: Deno.TcpConn) => void,
  log: Logger,
  socketLabel?: string,
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
        log.error(
          withSuppressed("Accept failed on {socket}: {error}", suppressed),
          {
            socket: socketLabel ?? `port ${address.port}`,
            port: address.port,
            error: (error as Error).message,
            suppressed,
          },
        );
      }
      if (isResourceExhausted(error)) {
        await new Promise((resolve) => setTimeout(resolve, RESOURCE_PAUSE_MS));
      }
      continue;
    }
    onConn(conn);
  }
}

function isListenerClosed(error: unknown): boolean {
  return error instanceof Deno.errors.BadResource ||
    error instanceof Deno.errors.Interrupted;
}
