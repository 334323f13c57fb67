import assert from "node:assert/strict";
import {
  ConnectionLimit,
  defaultMaxConnections,
  limitWarning,
  RESERVED_DESCRIPTORS,
} from "./connection_limit.ts";

Deno.test("defaultMaxConnections() leaves two descriptors per connection", () => {
  assert.equal(defaultMaxConnections(20_000, 1), 9_967);
  assert.equal(defaultMaxConnections(20_000, 10_000), 4_968);
  assert.equal(defaultMaxConnections(RESERVED_DESCRIPTORS, 10), 1);
});

/** Creates a limit that records its pauses and resumes in `calls`. */
function recorded(max: number) {
  const calls: string[] = [];
  const limit = new ConnectionLimit(
    max,
    () => calls.push("pause"),
    () => calls.push("resume"),
  );
  return { limit, calls };
}

Deno.test("ConnectionLimit pauses at the limit and resumes below it", () => {
  const { limit, calls } = recorded(3);
  limit.update(2);
  assert.deepEqual(calls, []);

  limit.update(3);
  limit.update(3);
  assert.deepEqual(calls, ["pause"]);
  assert.equal(limit.paused, true);

  limit.update(2);
  assert.deepEqual(calls, ["pause", "resume"]);
  assert.equal(limit.paused, false);
});

Deno.test("ConnectionLimit resumes a large limit one percent below", () => {
  const { limit, calls } = recorded(1_000);
  limit.update(1_000);
  limit.update(991);
  assert.deepEqual(calls, ["pause"]);

  limit.update(990);
  assert.deepEqual(calls, ["pause", "resume"]);
});

Deno.test("ConnectionLimit applies a lower limit at once", () => {
  const { limit, calls } = recorded(10);
  limit.update(5);
  limit.setMax(4, 5);
  assert.deepEqual(calls, ["pause"]);
  assert.equal(limit.max, 4);

  limit.setMax(10, 5);
  assert.deepEqual(calls, ["pause", "resume"]);
});

Deno.test("limitWarning() names a limit the descriptors cannot hold", () => {
  assert.match(
    limitWarning(1_000, 128, 1, false) ?? "",
    /^MaxConnections is 1000, but the open-file limit of 128 leaves room for about 31: /,
  );
  assert.match(
    limitWarning(1, 100, 40, true) ?? "",
    /^The open-file limit of 100 leaves room for only 1 connection at once: /,
  );
  assert.match(
    limitWarning(18, 20_000, 19_900, true) ?? "",
    /^The 19900 listening sockets take most of the open-file limit of 20000, which leaves room for 18 connections at once: /,
  );
  assert.equal(limitWarning(9_967, 20_000, 1, true), undefined);
  assert.equal(limitWarning(5, 20_000, 1, false), undefined);
});
