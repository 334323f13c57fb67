import { getLogger } from "@logtape/logtape";

const log = getLogger(["anyport"]);

/** Every limiter, so that counts not reported yet can be logged. */
const limiters = new Set<LogRateLimiter>();

/**
 * Per-key limiter for repeated log lines: allows `burst` lines per key in
 * each window and counts the rest, so a flood of one error stays readable.
 * Keys describe the lines, such as `accepts on port 80`, because summaries
 * name them.
 * The count of dropped lines goes on the next line allowed for the key, or
 * into a summary line from {@linkcode logSuppressed}.
 */
export class LogRateLimiter {
  readonly burst: number;
  readonly windowMs: number;
  #windows = new Map<string, { start: number; count: number }>();

  constructor(burst = 5, windowMs = 10_000) {
    this.burst = burst;
    this.windowMs = windowMs;
    limiters.add(this);
  }

  /**
   * Removes and returns the keys whose window ended with lines dropped,
   * with their counts; every such key when `all` is set.
   */
  takeSuppressed(now: number, all = false): [string, number][] {
    const suppressed: [string, number][] = [];
    for (const [key, window] of this.#windows) {
      if (window.count <= this.burst) continue;
      if (!all && now - window.start < this.windowMs) continue;
      suppressed.push([key, window.count - this.burst]);
      this.#windows.delete(key);
    }
    return suppressed;
  }

  /**
   * Counts one occurrence of `key` at time `now`. Returns -1 when the line
   * must be dropped. Otherwise returns how many lines were dropped for this
   * key since the last one allowed, so the caller can report the count.
   */
  allow(key: string, now: number): number {
    const window = this.#windows.get(key);
    if (window === undefined || now - window.start >= this.windowMs) {
      const suppressed = window === undefined
        ? 0
        : Math.max(0, window.count - this.burst);
      this.#windows.set(key, { start: now, count: 1 });
      if (this.#windows.size > 10_000) this.#prune(now);
      return suppressed;
    }
    window.count++;
    return window.count <= this.burst ? 0 : -1;
  }

  #prune(now: number): void {
    for (const [key, window] of this.#windows) {
      if (now - window.start >= this.windowMs) this.#windows.delete(key);
    }
  }
}

/**
 * Appends a count of dropped repeats to a log message template, so text
 * logs show it too: `"… ({suppressed} similar messages suppressed)"`.
 */
export function withSuppressed(template: string, suppressed: number): string {
  return suppressed > 0
    ? `${template} ({suppressed} similar messages suppressed)`
    : template;
}

/**
 * Logs one line per key whose dropped lines no later line reported, such as
 * the end of a burst of errors. Call it now and then, and with `all` at stop.
 */
export function logSuppressed(now = Date.now(), all = false): void {
  for (const limiter of limiters) {
    for (const [key, count] of limiter.takeSuppressed(now, all)) {
      log.warning(
        "{count} more log lines about {key} were suppressed",
        { count, key },
      );
    }
  }
}
