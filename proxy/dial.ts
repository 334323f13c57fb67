import type { TargetAddress } from "./target.ts";

/** Failed connect to one target, with the reason in plain words. */
export class DialError extends Error {
  readonly target: TargetAddress;
  /** Short reason, such as "refused" or "timed out after 5000 ms". */
  readonly reason: string;

  constructor(target: TargetAddress, reason: string, cause?: unknown) {
    super(`Cannot connect to target "${target.label}": ${reason}`, { cause });
    this.name = "DialError";
    this.target = target;
    this.reason = reason;
  }
}

/**
 * Connects to a target, resolving its host name first. The whole attempt,
 * lookup included, is cut off after `timeoutMs`, so a blackholed target or
 * a slow resolver holds the client no longer than that.
 *
 * @throws {DialError} naming the target and the reason
 */
export async function dialTarget(
  target: TargetAddress,
  timeoutMs: number,
): Promise<Deno.TcpConn> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    const conn = await Deno.connect({
      hostname: target.hostname,
      port: target.port,
      signal,
    });
    if (signal.aborted) {
      conn.close();
      throw new DialError(target, `timed out after ${timeoutMs} ms`);
    }
    return conn;
  } catch (error) {
    if (error instanceof DialError) throw error;
    throw new DialError(
      target,
      describeDialError(error, signal, timeoutMs),
      error,
    );
  }
}

function describeDialError(
  error: unknown,
  signal: AbortSignal,
  timeoutMs: number,
): string {
  if (signal.aborted) return `timed out after ${timeoutMs} ms`;
  if (error instanceof Deno.errors.ConnectionRefused) return "refused";
  const message = error instanceof Error ? error.message : String(error);
  if (/failed to lookup address/i.test(message)) {
    return `cannot resolve host name (${message})`;
  }
  return message;
}
