import assert from "node:assert/strict";
import { App } from "./app.ts";
import type { AppConfig } from "./config.ts";
import { DEFAULT_SETTINGS, type Settings } from "./settings.ts";
import { parseTarget, type TargetAddress } from "./target.ts";

/** Parses `text` as a target address and fails the test when it is invalid. */
function target(text: string): TargetAddress {
  const result = parseTarget(text);
  if (typeof result === "string") assert.fail(result);
  return result;
}

/** Config of app "web" on port 8080 with the given targets. */
function webConfig(...targets: string[]): AppConfig {
  return {
    name: "web",
    ports: [{ first: 8080, last: 8080 }],
    targets: targets.map(target),
  };
}

Deno.test("App starts every target fresh", () => {
  const app = new App(webConfig("h1:1", "h2:2"), DEFAULT_SETTINGS);

  assert.equal(app.name, "web");
  assert.equal(app.targets.length, 2);
  assert.deepEqual(app.targets.map((t) => t.address.label), ["h1:1", "h2:2"]);
  for (const state of app.targets) {
    assert.equal(state.active, 0);
    assert.equal(state.failures, 0);
    assert.equal(state.probing, false);
  }
  assert.notEqual(app.targets[0], app.targets[1]);
});

Deno.test("App uses the balance policy of the settings", () => {
  const settings: Settings = { ...DEFAULT_SETTINGS, balance: "random" };

  const app = new App(webConfig("h1:1"), settings);

  assert.equal(app.balancer.policy, "random");
});

Deno.test("App prefers its own balance policy", () => {
  const settings: Settings = { ...DEFAULT_SETTINGS, balance: "random" };

  const app = new App(
    { ...webConfig("h1:1"), balance: "round-robin" },
    settings,
  );

  assert.equal(app.balancer.policy, "round-robin");
});

Deno.test("App reload keeps state of unchanged targets", () => {
  const before = new App(webConfig("h1:1", "h2:2"), DEFAULT_SETTINGS);
  const [h1, h2] = before.targets;
  h1!.active = 4;
  h2!.recordFailure(0, 1_000, 30_000);

  const after = new App(
    webConfig("h2:2", "h3:3", "h1:1"),
    DEFAULT_SETTINGS,
    before,
  );

  assert.equal(after.targets[0], h2);
  assert.equal(after.targets[2], h1);
  assert.equal(after.targets[2]!.active, 4);
  assert.equal(after.targets[0]!.failures, 1);
});

Deno.test("App reload starts new targets fresh", () => {
  const before = new App(webConfig("h1:1"), DEFAULT_SETTINGS);
  before.targets[0]!.active = 2;
  before.targets[0]!.recordFailure(0, 1_000, 30_000);

  const after = new App(webConfig("h1:1", "h3:3"), DEFAULT_SETTINGS, before);
  const fresh = after.targets[1]!;

  assert.equal(fresh.address.label, "h3:3");
  assert.ok(!before.targets.includes(fresh));
  assert.equal(fresh.active, 0);
  assert.equal(fresh.failures, 0);
  assert.equal(fresh.isAvailable(0), true);
});

Deno.test("App reload drops removed targets", () => {
  const before = new App(webConfig("h1:1", "h2:2"), DEFAULT_SETTINGS);

  const after = new App(webConfig("h2:2"), DEFAULT_SETTINGS, before);

  assert.equal(after.targets.length, 1);
  assert.equal(after.targets[0], before.targets[1]);
});

Deno.test("App reload matches targets by their text", () => {
  // Another spelling of the same address counts as a new target.
  const before = new App(webConfig("h1:80"), DEFAULT_SETTINGS);
  before.targets[0]!.active = 1;

  const after = new App(webConfig("H1:80"), DEFAULT_SETTINGS, before);

  assert.notEqual(after.targets[0], before.targets[0]);
  assert.equal(after.targets[0]!.active, 0);
});

Deno.test("App reload applies a new balance policy", () => {
  const before = new App(webConfig("h1:1"), DEFAULT_SETTINGS);
  const settings: Settings = { ...DEFAULT_SETTINGS, balance: "round-robin" };

  const after = new App(webConfig("h1:1"), settings, before);

  assert.equal(after.balancer.policy, "round-robin");
  assert.equal(after.targets[0], before.targets[0]);
});

Deno.test("App reload leaves the previous app unchanged", () => {
  const before = new App(webConfig("h1:1", "h2:2"), DEFAULT_SETTINGS);
  const previousTargets = [...before.targets];

  const after = new App(webConfig("h3:3"), DEFAULT_SETTINGS, before);

  assert.deepEqual([...before.targets], previousTargets);
  assert.equal(before.config.targets.length, 2);
  assert.equal(after.config.targets.length, 1);
});
