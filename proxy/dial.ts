import type { Resolver } from "./resolver.ts";
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
 * Connects to a target, looking up its host name through `resolver` first.
 * The whole attempt, lookup included, is cut off after `timeoutMs`, so a
 * blackholed target or a slow resolver keeps the client waiting no longer than that.
 * When the name has several addresses, each is tried in turn.
 *
 * @throws {DialError} naming the target and the reason
 */
export async function dialTarget(
  target: TargetAddress,
  timeoutMs: number,
  resolver: Resolver,
): Promise<Deno.TcpConn> {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    return await dialAddresses(target, controller.signal, timeoutMs, resolver);
  } finally {
    clearTimeout(timer);
  }
}

async function dialAddresses(
  target: TargetAddress,
  signal: AbortSignal,
  timeoutMs: number,
  resolver: Resolver,
): Promise<Deno.TcpConn> {
  let addresses: string[];
  try {
    addresses = target.literal
      ? [target.hostname]
      : await abortable(resolver.resolve(target.hostname), signal);
  } catch (error) {
    throw new DialError(
      target,
      describeDialError(error, signal, timeoutMs),
      error,
    );
  }
  let lastError: unknown;
  for (const hostname of addresses) {
    try {
      return await Deno.connect({ hostname, port: target.port, signal });
    } catch (error) {
      lastError = error;
      if (signal.aborted) break;
    }
  }
  throw new DialError(
    target,
    describeDialError(lastError, signal, timeoutMs),
    lastError,
  );
}

/** Settles like `promise`, or rejects when `signal` aborts first. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() =>
      signal.removeEventListener("abort", onAbort)
    );
  });
}

function describeDialError(
  error: unknown,
  signal: AbortSignal,
  timeoutMs: number,
): string {
  if (signal.aborted) return `timed out after ${timeoutMs} ms`;
  if (error instanceof Deno.errors.ConnectionRefused) return "refused";
  const message = error instanceof Error ? error.message : String(error);
  return message;
}
