import assert from "node:assert/strict";
import { TargetState } from "./target_state.ts";

const ADDRESS = {
  hostname: "10.0.0.1",
  port: 9001,
  literal: true,
  label: "10.0.0.1:9001",
};
const BACKOFF_MS = 1_000;
const MAX_BACKOFF_MS = 30_000;

Deno.test("TargetState starts up and idle", () => {
  const state = new TargetState(ADDRESS);

  assert.equal(state.address, ADDRESS);
  assert.equal(state.active, 0);
  assert.equal(state.failures, 0);
  assert.equal(state.probing, false);
  assert.equal(state.isAvailable(0), true);
  assert.equal(state.isDown(0), false);
});

Deno.test("TargetState lets connections in parallel while up", () => {
  const state = new TargetState(ADDRESS);

  state.beginConnect();
  state.beginConnect();

  assert.equal(state.probing, false);
  assert.equal(state.isAvailable(0), true);
});

Deno.test("TargetState skips a failed target for the back-off", () => {
  const state = new TargetState(ADDRESS);

  const period = state.recordFailure(10_000, BACKOFF_MS, MAX_BACKOFF_MS);

  assert.equal(period, 1_000);
  assert.equal(state.failures, 1);
  assert.equal(state.downUntil, 11_000);
  assert.equal(state.isAvailable(10_000), false);
  assert.equal(state.isAvailable(10_999), false);
  assert.equal(state.isDown(10_999), true);
  assert.equal(state.isAvailable(11_000), true);
  assert.equal(state.isDown(11_000), false);
});

Deno.test("TargetState doubles the back-off per failure", () => {
  const state = new TargetState(ADDRESS);
  const periods: number[] = [];

  for (let i = 0; i < 5; i++) {
    periods.push(state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS));
  }

  assert.deepEqual(periods, [1_000, 2_000, 4_000, 8_000, 16_000]);
  assert.equal(state.failures, 5);
  assert.equal(state.downUntil, 16_000);
});

Deno.test("TargetState caps the back-off at the maximum", () => {
  const state = new TargetState(ADDRESS);
  const periods: number[] = [];

  for (let i = 0; i < 8; i++) {
    periods.push(state.recordFailure(0, BACKOFF_MS, 5_000));
  }

  assert.deepEqual(periods, [
    1_000,
    2_000,
    4_000,
    5_000,
    5_000,
    5_000,
    5_000,
    5_000,
  ]);
});

Deno.test("TargetState keeps the back-off finite after many failures", () => {
  const state = new TargetState(ADDRESS);
  let period = 0;

  for (let i = 0; i < 2_000; i++) {
    period = state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);
  }

  assert.equal(period, MAX_BACKOFF_MS);
  assert.equal(state.downUntil, MAX_BACKOFF_MS);
});

Deno.test("TargetState counts the back-off from the failure time", () => {
  const state = new TargetState(ADDRESS);
  state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);

  state.recordFailure(5_000, BACKOFF_MS, MAX_BACKOFF_MS);

  assert.equal(state.downUntil, 7_000);
  assert.equal(state.isAvailable(6_999), false);
  assert.equal(state.isAvailable(7_000), true);
});

Deno.test("TargetState lets one probe through after the back-off", () => {
  const state = new TargetState(ADDRESS);
  state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);

  assert.equal(state.isAvailable(1_000), true);
  state.beginConnect();

  assert.equal(state.probing, true);
  // Other connections skip the target while the probe is in flight.
  assert.equal(state.isAvailable(1_000), false);
  assert.equal(state.isAvailable(60_000), false);
  assert.equal(state.isDown(60_000), true);
});

Deno.test("TargetState doubles the back-off when a probe fails", () => {
  const state = new TargetState(ADDRESS);
  state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);
  state.beginConnect();

  const period = state.recordFailure(1_000, BACKOFF_MS, MAX_BACKOFF_MS);

  assert.equal(period, 2_000);
  assert.equal(state.probing, false);
  assert.equal(state.isAvailable(2_999), false);
  assert.equal(state.isAvailable(3_000), true);
});

Deno.test("TargetState resets after a successful probe", () => {
  const state = new TargetState(ADDRESS);
  for (let i = 0; i < 3; i++) {
    state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);
  }
  state.beginConnect();

  const wasDown = state.recordSuccess();

  assert.equal(wasDown, true);
  assert.equal(state.failures, 0);
  assert.equal(state.probing, false);
  assert.equal(state.downUntil, 0);
  assert.equal(state.isAvailable(0), true);
  assert.equal(state.isDown(0), false);
});

Deno.test("TargetState starts the back-off over after a success", () => {
  const state = new TargetState(ADDRESS);
  for (let i = 0; i < 3; i++) {
    state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);
  }
  state.recordSuccess();

  const period = state.recordFailure(100_000, BACKOFF_MS, MAX_BACKOFF_MS);

  assert.equal(period, BACKOFF_MS);
  assert.equal(state.failures, 1);
});

Deno.test("TargetState reports a success while up as not down", () => {
  const state = new TargetState(ADDRESS);

  assert.equal(state.recordSuccess(), false);
});

Deno.test("TargetState tells connects older than the back-off", () => {
  const state = new TargetState(ADDRESS);
  const first = state.beginConnect();
  const second = state.beginConnect();

  assert.equal(state.startedBeforeBackoff(first), false);
  state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);
  assert.equal(state.startedBeforeBackoff(second), true);

  const probe = state.beginConnect();
  assert.equal(state.startedBeforeBackoff(probe), false);
  state.recordFailure(1_000, BACKOFF_MS, MAX_BACKOFF_MS);
  assert.equal(state.startedBeforeBackoff(probe), true);

  state.recordSuccess();
  assert.equal(state.startedBeforeBackoff(second), false);
});

Deno.test("TargetState keeps the probe when an older connect ends", () => {
  const state = new TargetState(ADDRESS);
  const older = state.beginConnect();
  state.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);
  const probe = state.beginConnect();

  state.cancelConnect(older);
  assert.equal(state.probing, true);
  assert.equal(state.isAvailable(60_000), false);

  state.cancelConnect(probe);
  assert.equal(state.probing, false);
  assert.equal(state.isAvailable(60_000), true);
});

Deno.test("TargetState keeps its back-off after an early failure", () => {
  const target = new TargetState(ADDRESS);
  target.recordFailure(1_000, 500, 10_000);
  target.beginConnect();
  assert.equal(target.isAvailable(1_100), false);

  target.recordEarlyFailure();

  assert.equal(target.downUntil, 1_500);
  assert.equal(target.probing, false);
  assert.equal(target.isAvailable(1_500), true);
});

Deno.test("TargetState.endBackoff() lets the next connection probe", () => {
  const target = new TargetState(ADDRESS);
  target.recordFailure(1_000, 500, 10_000);

  target.endBackoff(1_100);

  assert.equal(target.isAvailable(1_100), true);
  assert.equal(target.failures, 1);
});

Deno.test("TargetState.endBackoff() starts the doubling over", () => {
  const target = new TargetState(ADDRESS);
  let now = 0;
  let period = 0;
  for (let i = 0; i < 8; i++) {
    period = target.recordFailure(now, BACKOFF_MS, MAX_BACKOFF_MS);
    now += period;
  }
  assert.equal(period, MAX_BACKOFF_MS);

  target.endBackoff(now);
  period = target.recordFailure(now, BACKOFF_MS, MAX_BACKOFF_MS);

  assert.equal(period, 2 * BACKOFF_MS);
});

Deno.test("TargetState.endBackoff() during a probe probes again after it", () => {
  const target = new TargetState(ADDRESS);
  target.recordFailure(0, BACKOFF_MS, MAX_BACKOFF_MS);
  target.recordFailure(1_000, BACKOFF_MS, MAX_BACKOFF_MS);
  // A client tries the target early, as when no target of the app is up.
  target.beginConnect();

  target.endBackoff(1_500);
  assert.equal(target.isAvailable(1_500), false);
  target.recordEarlyFailure();

  assert.equal(target.isAvailable(1_600), true);
  assert.equal(target.failures, 1);
});
