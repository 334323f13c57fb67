import type { BalancePolicy } from "./settings.ts";
import type { TargetState } from "./target_state.ts";

/**
 * Orders an app's targets for one connection: the balancer's choice first,
 * then the other available targets as failover candidates.
 */
export class Balancer {
  readonly policy: BalancePolicy;
  #next = 0;

  constructor(policy: BalancePolicy) {
    this.policy = policy;
  }

  /**
   * Returns the targets to try, in order, skipping targets in back-off.
   *
   * When every target is in back-off, returns those with no connect in
   * flight, ordered by the end of their back-off, as Envoy does in panic
   * mode. So an app whose targets restarted is back with the first client
   * after they listen again, not at the end of a back-off of up to
   * `MaxBackoffMs`. A target that drops connects then holds up one client at
   * a time. Clients that find a connect in flight to every target get an
   * empty list.
   */
  order(targets: readonly TargetState[], now: number): TargetState[] {
    const available = targets.filter((t) => t.isAvailable(now));
    if (available.length === 0) return this.#panicOrder(targets);
    const first = this.#pick(available);
    const start = this.#next++ % available.length;
    const rest: TargetState[] = [];
    for (let i = 0; i < available.length; i++) {
      const target = available[(start + i) % available.length]!;
      if (target !== first) rest.push(target);
    }
    return [first, ...rest];
  }

  #panicOrder(targets: readonly TargetState[]): TargetState[] {
    return targets.filter((t) => !t.probing).sort((a, b) =>
      a.downUntil - b.downUntil
    );
  }

  #pick(available: readonly TargetState[]): TargetState {
    const count = available.length;
    if (count === 1) return available[0]!;
    switch (this.policy) {
      case "round-robin":
        return available[this.#next % count]!;
      case "random":
        return available[randomIndex(count)]!;
      case "least-connections": {
        // Power of two random choices: nearly as even as a full scan, and
        // two targets that tie are not always chosen in the same order.
        const a = randomIndex(count);
        const b = (a + 1 + randomIndex(count - 1)) % count;
        const x = available[a]!;
        const y = available[b]!;
        return y.load < x.load ? y : x;
      }
    }
  }
}

function randomIndex(count: number): number {
  return Math.floor(Math.random() * count);
}
