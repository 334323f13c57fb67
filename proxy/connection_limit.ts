import { getLogger } from "@logtape/logtape";
import { LogRateLimiter, withSuppressed } from "./rate_limit.ts";
import { counted } from "./plural.ts";

const log = getLogger(["anyport"]);
const limiter = new LogRateLimiter();

/**
 * Descriptors kept out of the default limit for the runtime (about 30 at
 * start), DNS lookups, config reads and listeners that a reload opens.
 */
export const RESERVED_DESCRIPTORS = 64;

/** Maximum value of `MaxConnections`. */
export const MAX_CONNECTIONS = 1_000_000;

/**
 * Returns the default connection limit. Each proxied connection uses two
 * descriptors, so the limit is half of those left after the listening
 * sockets and {@linkcode RESERVED_DESCRIPTORS}, and at least 1.
 */
export function defaultMaxConnections(
  descriptorLimit: number,
  listeningSockets: number,
): number {
  const free = descriptorLimit - RESERVED_DESCRIPTORS - listeningSockets;
  return Math.max(1, Math.floor(free / 2));
}

/**
 * Returns a warning when `max` connections need more descriptors than
 * `descriptorLimit` allows, or when a limit `derived` from it leaves room for
 * almost no connections, or `undefined`.
 */
export function limitWarning(
  max: number,
  descriptorLimit: number,
  listeningSockets: number,
  derived: boolean,
): string | undefined {
  const fitting = defaultMaxConnections(descriptorLimit, listeningSockets);
  if (max > fitting) {
    return `MaxConnections is ${max}, but the open-file limit of ${descriptorLimit} leaves room for about ${fitting}: past that, accepts and target connects fail with "Too many open files". Raise the limit (ulimit -n, systemd LimitNOFILE) or lower MaxConnections`;
  }
  if (derived && max < MIN_USEFUL_CONNECTIONS) {
    return `The open-file limit of ${descriptorLimit} leaves room for only ${
      counted(max, "connection")
    } at once: raise it (ulimit -n, systemd LimitNOFILE)`;
  }
  if (derived && listeningSockets > max) {
    return `The ${
      counted(listeningSockets, "listening socket")
    } take most of the open-file limit of ${descriptorLimit}, which leaves room for ${
      counted(max, "connection")
    } at once: raise the limit (ulimit -n, systemd LimitNOFILE), or use "Mode": "bpf", which serves every port with one socket`;
  }
  return undefined;
}

/** Fewer connections than this at once is worth a warning at start. */
const MIN_USEFUL_CONNECTIONS = 16;

/**
 * Number of connections that must close below the limit before accepting
 * resumes. In listeners mode each pause and resume costs one system call
 * per port, so a proxy at its limit does not pay that per connection.
 */
function resumeMargin(max: number): number {
  return Math.max(1, Math.floor(max / 100));
}

/**
 * Accept switch that stops accepting while the maximum of connections is
 * open, as HAProxy's `maxconn` does. New connections then wait in the kernel's
 * listen backlog instead of failing with `EMFILE` after the accept.
 */
export class ConnectionLimit {
  readonly #pause: () => void;
  readonly #resume: () => void;
  #max: number;
  #paused = false;
  /**
   * When the pause in force was logged, so that its end is logged too; unset
   * when the rate limit held that line back.
   */
  #loggedPauseAt: number | undefined;

  /**
   * @param pause stops every listener from accepting
   * @param resume lets them accept again
   */
  constructor(max: number, pause: () => void, resume: () => void) {
    this.#max = max;
    this.#pause = pause;
    this.#resume = resume;
  }

  /** The connection limit in force. */
  get max(): number {
    return this.#max;
  }

  /** Whether the listeners are paused. */
  get paused(): boolean {
    return this.#paused;
  }

  /** Sets a new limit, on reload, and applies it to `open` connections. */
  setMax(max: number, open: number): void {
    this.#max = max;
    this.update(open);
  }

  /** Pauses or resumes accepting for `open` connections. */
  update(open: number): void {
    if (!this.#paused && open >= this.#max) {
      this.#paused = true;
      this.#pause();
      const suppressed = limiter.allow("connection limit", Date.now());
      if (suppressed < 0) return;
      this.#loggedPauseAt = Date.now();
      log.warn(
        withSuppressed(
          "Connection limit reached: {counted} open, so new ones wait in the listen backlog until some close. Raise MaxConnections or the open-file limit (ulimit -n) if this load is normal",
          suppressed,
        ),
        {
          counted: counted(open, "connection"),
          open,
          max: this.#max,
          suppressed,
        },
      );
    } else if (this.#paused && open <= this.#max - resumeMargin(this.#max)) {
      this.#paused = false;
      this.#resume();
      const pausedAt = this.#loggedPauseAt;
      this.#loggedPauseAt = undefined;
      const properties = { counted: counted(open, "connection"), open };
      if (pausedAt === undefined) {
        log.debug("Accepting again: {counted} open", properties);
      } else {
        log.info(
          "Accepting again: {counted} open, {pausedMs} ms after the connection limit was reached",
          { ...properties, pausedMs: Date.now() - pausedAt },
        );
      }
    }
  }
}
