import { OsError, strerror } from "../ffi/libc.ts";
import {
  EINPROGRESS,
  lastErrno,
  net,
  setNoDelay,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  socketError,
} from "../ffi/net.ts";
import type { Deadline, EventLoop, Watched } from "./event_loop.ts";
import { parseAddress } from "./prefix.ts";
import type { Resolver } from "./resolver.ts";
import { AF_INET, AF_INET6, encodeSockAddr } from "./sockaddr.ts";
import type { TargetAddress } from "./target.ts";

const ECONNREFUSED = 111;

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

class Timeout extends Error {}

/** Raised when {@linkcode DialControl.cancel} ended the connect. */
export class DialCancelled extends Error {
  constructor() {
    super("The connect was cancelled");
    this.name = "DialCancelled";
  }
}

/**
 * Lets the caller cancel a connect in progress, such as when a drain ends
 * while a client still waits for its target.
 */
export class DialControl {
  cancelled = false;
  /** Ends the attempt in flight; set by the attempt itself. */
  stop: (() => void) | undefined;

  /** Closes the socket of the attempt in flight and stops further tries. */
  cancel(): void {
    this.cancelled = true;
    this.stop?.();
  }
}

/**
 * Connects to a target, looking up its host name through `resolver` first.
 * The whole attempt, lookup included, is cut off after `timeoutMs`, so a
 * blackholed target or a slow resolver keeps the client waiting no longer
 * than that. When the name has several addresses, each is tried in turn.
 *
 * @returns the connected socket, watched by `loop` with no handler yet
 * @throws {DialError} naming the target and the reason
 * @throws {DialCancelled} when `control` was cancelled
 */
export async function dialTarget(
  target: TargetAddress,
  timeoutMs: number,
  resolver: Resolver,
  loop: EventLoop,
  control?: DialControl,
): Promise<Watched> {
  const deadline = Date.now() + timeoutMs;
  let addresses: string[];
  try {
    addresses = target.literal
      ? [target.hostname]
      : await withDeadline(resolver.resolve(target.hostname), timeoutMs, loop);
  } catch (error) {
    throw new DialError(target, describe(error, timeoutMs), error);
  }
  let lastError: unknown;
  for (const hostname of addresses) {
    if (control?.cancelled) throw new DialCancelled();
    const address = sockAddrOf(hostname, target.port);
    if (address === undefined) {
      lastError = new Error(`the resolver returned "${hostname}"`);
      continue;
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) {
      lastError = new Timeout();
      break;
    }
    try {
      return await connectOnce(loop, address, remaining, control);
    } catch (error) {
      if (error instanceof DialCancelled) throw error;
      lastError = error;
      if (error instanceof Timeout) break;
    }
  }
  throw new DialError(target, describe(lastError, timeoutMs), lastError);
}

/**
 * Socket addresses by port and literal address, so connections to the same
 * target parse and encode its address once.
 */
const sockAddrs = new Map<string, Uint8Array<ArrayBuffer>>();

/** Cached entries beyond which the cache starts over. */
const SOCKADDR_CACHE_LIMIT = 4096;

/** Encodes `hostname`, a literal address, and `port` for `connect(2)`. */
function sockAddrOf(
  hostname: string,
  port: number,
): Uint8Array<ArrayBuffer> | undefined {
  const key = `${port} ${hostname}`;
  let sockaddr = sockAddrs.get(key);
  if (sockaddr === undefined) {
    const address = parseAddress(hostname);
    if (address === undefined) return undefined;
    sockaddr = encodeSockAddr(address, port);
    if (sockAddrs.size >= SOCKADDR_CACHE_LIMIT) sockAddrs.clear();
    sockAddrs.set(key, sockaddr);
  }
  return sockaddr;
}

/** Opens a non-blocking socket and connects it to `sockaddr`. */
function connectOnce(
  loop: EventLoop,
  sockaddr: Uint8Array<ArrayBuffer>,
  timeoutMs: number,
  control: DialControl | undefined,
): Promise<Watched> {
  const symbols = net();
  const family = sockaddr[0] === AF_INET ? AF_INET : AF_INET6;
  const fd = symbols.socket(
    family,
    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    0,
  );
  if (fd < 0) return Promise.reject(new OsError("socket", lastErrno()));
  setNoDelay(fd);
  if (symbols.connect(fd, sockaddr, sockaddr.length) < 0) {
    const code = lastErrno();
    if (code !== EINPROGRESS) {
      symbols.close(fd);
      return Promise.reject(new OsError("connect", code));
    }
  }
  let watched: Watched;
  try {
    watched = loop.watch(fd);
  } catch (error) {
    symbols.close(fd);
    return Promise.reject(error);
  }
  return new Promise((resolve, reject) => {
    const end = (error: Error) => {
      if (control !== undefined) control.stop = undefined;
      loop.close(fd);
      reject(error);
    };
    const timer = loop.after(timeoutMs, () => end(new Timeout()));
    if (control !== undefined) {
      control.stop = () => {
        timer.cancel();
        end(new DialCancelled());
      };
    }
    const onReady = (w: Watched) => {
      if (!w.writable && !w.failed) return;
      timer.cancel();
      if (control !== undefined) control.stop = undefined;
      w.handler = undefined;
      if (w.failed) {
        w.failed = false;
        const code = socketError(fd);
        if (code !== 0) {
          end(new OsError("connect", code));
          return;
        }
      }
      resolve(w);
    };
    watched.handler = onReady;
    // The connect may have finished before the socket was watched.
    if (watched.writable || watched.failed) onReady(watched);
  });
}

/** Settles like `promise`, or rejects with a timeout after `timeoutMs`. */
function withDeadline<T>(
  promise: Promise<T>,
  timeoutMs: number,
  loop: EventLoop,
): Promise<T> {
  let timer: Deadline | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = loop.after(timeoutMs, () => reject(new Timeout()));
  });
  return Promise.race([promise, timeout]).finally(() => timer?.cancel());
}

function describe(error: unknown, timeoutMs: number): string {
  if (error instanceof Timeout) return `timed out after ${timeoutMs} ms`;
  if (error instanceof OsError) {
    return error.errno === ECONNREFUSED ? "refused" : strerror(error.errno);
  }
  return error instanceof Error ? error.message : String(error);
}
