import type { TargetAddress } from "./target.ts";

/**
 * Runtime state of one target: open connections and passive health.
 *
 * A failed connect marks the target down for a back-off period that doubles
 * with each failure in a row, up to a maximum. When the period ends, one
 * connection may try the target again (a probe) while others still skip it,
 * so a dead target costs at most one failed attempt per period. Connects
 * that were already in flight when the back-off began fail without
 * lengthening it.
 */
export class TargetState {
  readonly address: TargetAddress;
  /** Open proxied connections to this target. */
  active = 0;
  /** Connects to this target in flight. */
  connecting = 0;
  /** Connect failures in a row; 0 when the target is up. */
  failures = 0;
  /** Time (ms since epoch) until which the target is skipped. */
  downUntil = 0;
  /** Whether a probe connect is in flight after the back-off ended. */
  probing = false;
  /** Number of back-offs started or lengthened so far. */
  #backoffs = 0;

  constructor(address: TargetAddress) {
    this.address = address;
  }

  /**
   * Connections that the least-connections balancer counts: the open ones
   * and those still connecting. Counting only open ones would send every
   * new client to a target that drops SYNs, whose count never rises, until
   * the first connect to it times out.
   */
  get load(): number {
    return this.active + this.connecting;
  }

  /** Returns whether new connections may be sent here at time `now`. */
  isAvailable(now: number): boolean {
    if (this.failures === 0) return true;
    return !this.probing && now >= this.downUntil;
  }

  /** Returns whether the target is in back-off at time `now`. */
  isDown(now: number): boolean {
    return this.failures > 0 && (this.probing || now < this.downUntil);
  }

  /**
   * Records the start of a connect, and returns a mark to pass to
   * `startedBeforeBackoff` if it fails. A target past its back-off becomes a
   * probe.
   */
  beginConnect(): number {
    if (this.failures > 0) this.probing = true;
    return this.#backoffs;
  }

  /**
   * Returns whether a connect, given the mark that `beginConnect` returned
   * for it, began before the current back-off. Its failure then adds nothing:
   * under load, dozens of connects are in flight when a target fails, and
   * counting each would reach the maximum back-off within a second.
   */
  startedBeforeBackoff(mark: number): boolean {
    return this.failures > 0 && mark !== this.#backoffs;
  }

  /**
   * Ends a connect that failed for reasons of the proxy, not the target.
   * Only the probe, which began after the latest back-off, clears `probing`:
   * an older connect that ends while a probe is in flight leaves it set.
   */
  cancelConnect(mark: number): void {
    if (mark === this.#backoffs) this.probing = false;
  }

  /**
   * Records a failed connect and starts or extends the back-off.
   * Returns the back-off period in ms.
   */
  recordFailure(now: number, backoffMs: number, maxBackoffMs: number): number {
    this.probing = false;
    this.failures++;
    this.#backoffs++;
    const period = Math.min(
      backoffMs * 2 ** Math.min(this.failures - 1, 30),
      maxBackoffMs,
    );
    this.downUntil = now + period;
    return period;
  }

  /**
   * Ends a connect that failed while the back-off was still running, which
   * happens when no target of the app is up. The back-off stays as it is:
   * lengthened by every client that tries, it would reach the maximum
   * within a second of an outage, and keep the target out that long after
   * it is back.
   */
  recordEarlyFailure(): void {
    this.probing = false;
  }

  /**
   * Ends the back-off now, so that the next connection probes the target,
   * and restarts the doubling from the base period. A probe already in
   * flight stays the only one. If it fails early, the next connection probes
   * again.
   */
  endBackoff(now: number): void {
    if (this.failures === 0) return;
    this.failures = 1;
    this.downUntil = Math.min(this.downUntil, now);
  }

  /** Records a successful connect. Returns whether the target was down. */
  recordSuccess(): boolean {
    const wasDown = this.failures > 0;
    this.failures = 0;
    this.probing = false;
    this.downUntil = 0;
    return wasDown;
  }
}
