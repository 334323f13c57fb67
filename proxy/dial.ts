import { getLogger } from "@logtape/logtape";
import { OsError } from "../ffi/libc.ts";
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
import { AddressPreference } from "./address_preference.ts";
import { checkConnectErrno } from "./connect_errno.ts";
import { type EventLoop, Watched } from "./event_loop.ts";
import { parseAddress } from "./prefix.ts";
import { LogRateLimiter, withSuppressed } from "./rate_limit.ts";
import type { Resolver } from "./resolver.ts";
import { AF_INET, AF_INET6, encodeSockAddr } from "./sockaddr.ts";
import type { Settings } from "./settings.ts";
import { readPortRange, SourcePorts } from "./source_ports.ts";
import type { TargetAddress } from "./target.ts";

const ECONNREFUSED = 111;

const log = getLogger(["anyport", "target"]);
const limiter = new LogRateLimiter();
const preference = new AddressPreference();

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
  /**
   * Called with each socket and its destination port right after
   * `connect(2)`, while the connection is being set up.
   */
  onConnect: ((fd: number, port: number) => void) | undefined;
  /** The target being dialled, as written in the config; for logs. */
  target: string | undefined;
  /** The address that the connect succeeded on, for targets given by name. */
  address: string | undefined;
  /**
   * Set when the connection in progress came back to this proxy, which
   * reset it already: the connect counts as failed even if it completes.
   */
  looped = false;

  /** Closes the socket of the attempt in flight and stops further tries. */
  cancel(): void {
    this.cancelled = true;
    this.stop?.();
  }
}

/** The settings that {@linkcode dialTarget} reads. */
export type DialSettings = Pick<Settings, "connectTimeoutMs" | "sourcePorts">;

let shared: SourcePorts | undefined;

/**
 * Returns the process's source port chooser. The ephemeral range belongs
 * to the network namespace, so it is read once.
 */
function sourcePorts(): SourcePorts {
  shared ??= new SourcePorts(readPortRange());
  return shared;
}

/** Called once with the outcome of {@linkcode dialTarget}. */
export type DialCallback = (
  result: Watched | DialError | DialCancelled,
) => void;

/**
 * Connects to a target, looking up its host name through `resolver` first.
 * The whole attempt, lookup included, is cut off after `timeoutMs`, so a
 * blackholed target or a slow resolver keeps the client waiting no longer
 * than that. When the name has several addresses, each is tried in turn,
 * with an equal share of the time left.
 *
 * Callbacks rather than promises, because a connect per client connection
 * made the promise machinery and its garbage a visible share of the CPU.
 *
 * @param done gets the connected socket (watched by `loop`, with no handler
 * yet), a {@linkcode DialError} naming the target and the reason, or a
 * {@linkcode DialCancelled} when `control` was cancelled. It may be called
 * before `dialTarget` returns.
 */
export function dialTarget(
  target: TargetAddress,
  settings: DialSettings,
  resolver: Resolver,
  loop: EventLoop,
  control: DialControl | undefined,
  done: DialCallback,
): void {
  const timeoutMs = settings.connectTimeoutMs;
  const ports = settings.sourcePorts === "rotate" ? sourcePorts() : undefined;
  const deadline = Date.now() + timeoutMs;
  const fail = (error: unknown) =>
    done(new DialError(target, describe(error, timeoutMs), error));
  // Failures of addresses tried before one that connects, for the log.
  let failed: string[] | undefined;
  const tryAddress = (addresses: readonly string[], index: number) => {
    if (control?.cancelled) return done(new DialCancelled());
    const hostname = addresses[index];
    if (hostname === undefined) return fail(new Error("no address left"));
    const sockaddr = target.literal
      ? literalSockAddrOf(target)
      : sockAddrOf(hostname, target.port);
    if (sockaddr === undefined) {
      return fail(new Error(`the resolver returned "${hostname}"`));
    }
    const remaining = deadline - Date.now();
    if (remaining <= 0) return fail(new Timeout());
    // Each address left gets an equal share of the time left, so one that
    // drops SYNs does not use up the time of the others.
    const share = Math.max(
      1,
      Math.floor(remaining / (addresses.length - index)),
    );
    connectOnce(loop, sockaddr, ports, share, control, (result) => {
      if (result instanceof Watched && failed !== undefined) {
        preference.remember(target.label, hostname);
        logSkippedAddresses(target, hostname, failed);
      }
      if (result instanceof Watched && control !== undefined) {
        control.address = target.literal ? undefined : hostname;
      }
      if (result instanceof Watched || result instanceof DialCancelled) {
        return done(result);
      }
      if (index + 1 >= addresses.length) return fail(result);
      (failed ??= []).push(`${hostname}: ${describe(result, share)}`);
      tryAddress(addresses, index + 1);
    });
  };
  if (target.literal) {
    tryAddress([target.hostname], 0);
    return;
  }
  let settled = false;
  const settle = () => {
    settled = true;
    timer.cancel();
    if (control !== undefined) control.stop = undefined;
  };
  const timer = loop.after(timeoutMs, () => {
    if (settled) return;
    settle();
    fail(new Timeout());
  });
  if (control !== undefined) {
    // Cancelling ends the wait for the lookup too, and its result is dropped.
    control.stop = () => {
      if (settled) return;
      settle();
      done(new DialCancelled());
    };
  }
  resolver.resolve(target.hostname).then(
    (addresses) => {
      if (settled) return;
      settle();
      tryAddress(preference.order(target.label, addresses), 0);
    },
    (error) => {
      if (settled) return;
      settle();
      fail(error);
    },
  );
}

/**
 * Socket addresses by port and literal address, so connections to the same
 * target parse and encode its address once.
 */
const sockAddrs = new Map<string, Uint8Array<ArrayBuffer>>();

/** Socket addresses of targets written as literal addresses. */
const literalSockAddrs = new WeakMap<TargetAddress, Uint8Array<ArrayBuffer>>();

/** Encodes a target written as a literal address, once per target. */
function literalSockAddrOf(
  target: TargetAddress,
): Uint8Array<ArrayBuffer> | undefined {
  let sockaddr = literalSockAddrs.get(target);
  if (sockaddr === undefined) {
    sockaddr = sockAddrOf(target.hostname, target.port);
    if (sockaddr !== undefined) literalSockAddrs.set(target, sockaddr);
  }
  return sockaddr;
}

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

/**
 * Opens a non-blocking socket and connects it to `sockaddr`; `done` gets
 * the socket or the error, possibly before this returns.
 */
function connectOnce(
  loop: EventLoop,
  sockaddr: Uint8Array<ArrayBuffer>,
  ports: SourcePorts | undefined,
  timeoutMs: number,
  control: DialControl | undefined,
  done: (result: Watched | Error) => void,
): void {
  const symbols = net();
  const family = sockaddr[0] === AF_INET ? AF_INET : AF_INET6;
  const fd = symbols.socket(
    family,
    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    0,
  );
  if (fd < 0) return done(new OsError("socket", lastErrno()));
  setNoDelay(fd);
  const connected = ports === undefined
    ? symbols.connect(fd, sockaddr, sockaddr.length)
    : ports.connect(fd, sockaddr, loop.now);
  if (connected < 0) {
    const code = checkConnectErrno(fd, sockaddr, lastErrno());
    if (code !== EINPROGRESS && code !== 0) {
      symbols.close(fd);
      return done(new OsError("connect", code));
    }
  }
  // Both address families keep the port at bytes 2 and 3.
  control?.onConnect?.(fd, (sockaddr[2]! << 8) | sockaddr[3]!);
  let watched: Watched;
  try {
    watched = loop.watch(fd);
  } catch (error) {
    symbols.close(fd);
    return done(error as Error);
  }
  const end = (error: Error) => {
    if (control !== undefined) control.stop = undefined;
    loop.close(fd);
    done(error);
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
    done(w);
  };
  watched.handler = onReady;
  // The connect may have finished before the socket was watched.
  if (watched.writable || watched.failed) onReady(watched);
}

function describe(error: unknown, timeoutMs: number): string {
  if (error instanceof Timeout) return `timed out after ${timeoutMs} ms`;
  if (error instanceof OsError) {
    // The message names the failed call, such as "socket: Too many open
    // files", so a local failure reads apart from a failure of the target.
    return error.errno === ECONNREFUSED ? "refused" : error.message;
  }
  return error instanceof Error ? error.message : String(error);
}

/**
 * Logs that `target` connected through `address` after the addresses
 * before it failed. Later connections try `address` first.
 */
function logSkippedAddresses(
  target: TargetAddress,
  address: string,
  failed: readonly string[],
): void {
  const suppressed = limiter.allow(`skipped ${target.label}`, Date.now());
  if (suppressed < 0) return;
  log.warning(
    withSuppressed(
      "Target {target} connected through {address} after {failed} failed, so connections try {address} first from now on",
      suppressed,
    ),
    { target: target.label, address, failed: failed.join(", "), suppressed },
  );
}
