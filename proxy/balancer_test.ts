import assert from "node:assert/strict";
import { Balancer } from "./balancer.ts";
import type { BalancePolicy } from "./settings.ts";
import { TargetState } from "./target_state.ts";

const POLICIES: BalancePolicy[] = [
  "least-connections",
  "round-robin",
  "random",
];
const NOW = 1_000_000;
const PICKS = 3_000;

/** Targets 10.0.0.1:9000, 10.0.0.2:9000, ... with no failures. */
function makeTargets(count: number): TargetState[] {
  return Array.from({ length: count }, (_, i) => {
    const hostname = `10.0.0.${i + 1}`;
    return new TargetState({
      hostname,
      port: 9000,
      literal: true,
      label: `${hostname}:9000`,
    });
  });
}

/** Puts `target` in back-off until well after `NOW`. */
function markDown(target: TargetState): void {
  target.recordFailure(NOW, 60_000, 60_000);
}

/** Counts how often each target comes first in `picks` orders. */
function countFirstPicks(
  balancer: Balancer,
  targets: TargetState[],
  picks: number,
  onPick?: (target: TargetState) => void,
): number[] {
  const counts = targets.map(() => 0);
  for (let i = 0; i < picks; i++) {
    const first = balancer.order(targets, NOW)[0];
    assert.ok(first);
    counts[targets.indexOf(first)]!++;
    onPick?.(first);
  }
  return counts;
}

Deno.test("Balancer stores its policy", () => {
  assert.equal(new Balancer("random").policy, "random");
});

Deno.test("Balancer returns [] for no targets", () => {
  for (const policy of POLICIES) {
    assert.deepEqual(new Balancer(policy).order([], NOW), [], policy);
  }
});

Deno.test("Balancer tries every target in back-off when all are down, soonest first", () => {
  for (const policy of POLICIES) {
    const targets = makeTargets(3);
    targets[0]!.recordFailure(NOW, 30_000, 60_000);
    targets[1]!.recordFailure(NOW, 10_000, 60_000);
    targets[2]!.recordFailure(NOW, 20_000, 60_000);

    const order = new Balancer(policy).order(targets, NOW);

    assert.deepEqual(order, [targets[1], targets[2], targets[0]], policy);
  }
});

Deno.test("Balancer skips targets with a connect in flight when all are down", () => {
  for (const policy of POLICIES) {
    const targets = makeTargets(3);
    targets.forEach(markDown);
    targets[0]!.beginConnect();
    targets[2]!.beginConnect();
    const balancer = new Balancer(policy);

    assert.deepEqual(balancer.order(targets, NOW), [targets[1]], policy);

    targets[1]!.beginConnect();
    assert.deepEqual(balancer.order(targets, NOW), [], policy);
  }
});

Deno.test("Balancer returns the only available target", () => {
  for (const policy of POLICIES) {
    const targets = makeTargets(3);
    markDown(targets[0]!);
    markDown(targets[2]!);

    const order = new Balancer(policy).order(targets, NOW);

    assert.deepEqual(order, [targets[1]], policy);
  }
});

Deno.test("Balancer skips targets in back-off", () => {
  for (const policy of POLICIES) {
    const balancer = new Balancer(policy);
    const targets = makeTargets(4);
    markDown(targets[1]!);

    for (let i = 0; i < 300; i++) {
      const order = balancer.order(targets, NOW);
      assert.equal(order.includes(targets[1]!), false, policy);
      assert.equal(order.length, 3, policy);
    }
  }
});

Deno.test("Balancer skips a target while its probe runs", () => {
  const targets = makeTargets(2);
  targets[0]!.recordFailure(0, 1_000, 1_000);
  targets[0]!.beginConnect();

  const order = new Balancer("round-robin").order(targets, NOW);

  assert.deepEqual(order, [targets[1]]);
});

Deno.test("Balancer offers a target again after its back-off", () => {
  const targets = makeTargets(2);
  markDown(targets[0]!);
  const balancer = new Balancer("round-robin");

  assert.equal(balancer.order(targets, NOW).length, 1);
  assert.equal(balancer.order(targets, NOW + 60_000).length, 2);
});

Deno.test("Balancer orders every available target exactly once", () => {
  for (const policy of POLICIES) {
    const balancer = new Balancer(policy);
    const targets = makeTargets(5);
    markDown(targets[3]!);
    const available = targets.filter((t) => t !== targets[3]);

    for (let i = 0; i < 300; i++) {
      const order = balancer.order(targets, NOW);
      assert.equal(order.length, available.length, policy);
      assert.equal(new Set(order).size, available.length, policy);
      for (const target of available) {
        assert.ok(order.includes(target), `${policy}: ${target.address.label}`);
      }
    }
  }
});

Deno.test("Balancer round-robin cycles through targets in turn", () => {
  const balancer = new Balancer("round-robin");
  const targets = makeTargets(3);

  const firsts = Array.from(
    { length: 6 },
    () => balancer.order(targets, NOW)[0],
  );

  assert.deepEqual(firsts, [...targets, ...targets]);
});

Deno.test("Balancer round-robin spreads picks exactly evenly", () => {
  const targets = makeTargets(3);

  const counts = countFirstPicks(new Balancer("round-robin"), targets, PICKS);

  assert.deepEqual(counts, [1_000, 1_000, 1_000]);
});

Deno.test("Balancer round-robin cycles over available targets", () => {
  const targets = makeTargets(3);
  markDown(targets[1]!);

  const counts = countFirstPicks(new Balancer("round-robin"), targets, 1_000);

  assert.deepEqual(counts, [500, 0, 500]);
});

// The bounds below are 850-1150 for an expected 1000 of 3000 picks: the
// standard deviation of a uniform pick is about 26, so a correct balancer
// falls outside them with a probability far below one in a million.

Deno.test("Balancer random spreads picks roughly evenly", () => {
  const targets = makeTargets(3);

  const counts = countFirstPicks(new Balancer("random"), targets, PICKS);

  for (const [i, count] of counts.entries()) {
    assert.ok(count >= 850, `target ${i}: ${count}`);
    assert.ok(count <= 1_150, `target ${i}: ${count}`);
  }
});

Deno.test("Balancer least-connections spreads idle picks evenly", () => {
  const targets = makeTargets(3);

  const counts = countFirstPicks(
    new Balancer("least-connections"),
    targets,
    PICKS,
  );

  for (const [i, count] of counts.entries()) {
    assert.ok(count >= 850, `target ${i}: ${count}`);
    assert.ok(count <= 1_150, `target ${i}: ${count}`);
  }
});

Deno.test("Balancer least-connections evens out open connections", () => {
  // Each pick goes to the less loaded of two targets, so the most loaded
  // target waits until the others catch up and the counts stay close.
  const targets = makeTargets(3);

  const counts = countFirstPicks(
    new Balancer("least-connections"),
    targets,
    PICKS,
    (target) => target.active++,
  );

  for (const [i, count] of counts.entries()) {
    assert.ok(count >= 990, `target ${i}: ${count}`);
    assert.ok(count <= 1_010, `target ${i}: ${count}`);
  }
});

Deno.test("Balancer least-connections picks the idler of two", () => {
  const balancer = new Balancer("least-connections");
  const targets = makeTargets(2);
  targets[0]!.active = 3;

  for (let i = 0; i < 200; i++) {
    assert.equal(balancer.order(targets, NOW)[0], targets[1]);
  }
});

Deno.test("Balancer least-connections never picks the busiest", () => {
  const targets = makeTargets(3);
  targets[0]!.active = 0;
  targets[1]!.active = 1;
  targets[2]!.active = 2;

  const counts = countFirstPicks(
    new Balancer("least-connections"),
    targets,
    PICKS,
  );

  // Two random choices include the idle target in 2 of 3 pairs.
  assert.equal(counts[2], 0);
  assert.ok(counts[0]! >= 1_800, `idle target: ${counts[0]}`);
  assert.ok(counts[1]! <= 1_200, `target with 1 connection: ${counts[1]}`);
});

Deno.test("Balancer puts other targets after the first pick", () => {
  const balancer = new Balancer("round-robin");
  const targets = makeTargets(3);

  const order = balancer.order(targets, NOW);

  assert.equal(order[0], targets[0]);
  assert.deepEqual(new Set(order.slice(1)), new Set([targets[1], targets[2]]));
});

Deno.test("Balancer least-connections counts connects in flight", () => {
  const targets = makeTargets(2);
  targets[0]!.active = 2;
  targets[1]!.active = 1;
  targets[1]!.connecting = 2;

  const counts = countFirstPicks(
    new Balancer("least-connections"),
    targets,
    PICKS,
  );

  assert.equal(counts[1], 0);
});
