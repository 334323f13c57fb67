/** A port range, both ends included. */
export interface PortRange {
  low: number;
  high: number;
}

/**
 * Shortest time, in ms, that a pass over the ports of one parity may take
 * before the passes alternate between both parities. A TIME_WAIT port can
 * be reused after `net.ipv4.tcp_tw_reuse_delay` (1,000 ms on the Linux 6.18
 * machines measured), and this leaves a margin.
 */
export const MIN_PASS_MS = 2_000;

/**
 * The order in which source ports for one target address are handed out.
 *
 * Like the kernel's own search in `connect(2)`, the cursor takes ports of
 * the range's low parity, two ports apart, which leaves the other parity to
 * `bind(2)` with port 0. A pass goes once around the range, from the pair
 * of ports where it started back to it.
 *
 * When a pass took less than `MIN_PASS_MS`, its ports would come back while
 * their TIME_WAIT sockets are too young to reuse. Then the passes alternate
 * between the two parities, which doubles the time until a port comes back,
 * until a pass is slow enough again. Only the time of a pass decides. A
 * refused port is no sign of the rate when a long-lived connection or a
 * listener uses it, and switching on refusals filled the other parity with
 * TIME_WAIT sockets at about a hundred connections per second.
 *
 * Alternating matters more than it seems. After a pass over one parity,
 * taking every port in a row would meet young and free ports by turns, so
 * each connect would skip a young port and the passes would stay fast.
 */
export class PortCursor {
  readonly #low: number;
  readonly #high: number;
  /** Pairs of ports in the range: pair `k` is `low + 2k` and `low + 2k + 1`. */
  readonly #pairs: number;
  #pair: number;
  #parity = 0;
  /** Pair where the current pass started. */
  #origin: number;
  /** Start of the current pass, from `Date.now()`. */
  #passStart: number;
  #alternating = false;

  /** Starts at a random pair of `range`, at time `now`. */
  constructor(range: PortRange, now: number) {
    this.#low = range.low;
    this.#high = range.high;
    this.#pairs = Math.floor((range.high - range.low) / 2) + 1;
    this.#pair = Math.floor(Math.random() * this.#pairs);
    this.#origin = this.#pair;
    this.#passStart = now;
  }

  /** Whether passes alternate between both parities. */
  get alternating(): boolean {
    return this.#alternating;
  }

  /** Returns the next port and moves past it. */
  take(now: number): number {
    for (;;) {
      const port = this.#low + 2 * this.#pair + this.#parity;
      this.#advance(now);
      // The last pair has no second port when the range has an odd size.
      if (port <= this.#high) return port;
    }
  }

  #advance(now: number): void {
    this.#pair = this.#pair + 1 === this.#pairs ? 0 : this.#pair + 1;
    if (this.#pair !== this.#origin) return;
    this.#alternating = now - this.#passStart < MIN_PASS_MS;
    this.#passStart = now;
    const flip = this.#alternating && this.#low < this.#high;
    this.#parity = flip ? this.#parity ^ 1 : 0;
  }
}
