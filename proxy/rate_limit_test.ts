import assert from "node:assert/strict";
import { LogRateLimiter } from "./rate_limit.ts";

Deno.test("LogRateLimiter defaults to 5 lines per 10 s", () => {
  const limiter = new LogRateLimiter();

  assert.equal(limiter.burst, 5);
  assert.equal(limiter.windowMs, 10_000);
});

Deno.test("LogRateLimiter allows a burst then drops", () => {
  const limiter = new LogRateLimiter(3, 1_000);

  assert.equal(limiter.allow("refused", 0), 0);
  assert.equal(limiter.allow("refused", 1), 0);
  assert.equal(limiter.allow("refused", 2), 0);
  assert.equal(limiter.allow("refused", 3), -1);
  assert.equal(limiter.allow("refused", 999), -1);
});

Deno.test("LogRateLimiter reports drops in the next window", () => {
  const limiter = new LogRateLimiter(2, 1_000);
  for (let i = 0; i < 7; i++) limiter.allow("refused", 100);

  assert.equal(limiter.allow("refused", 1_100), 5);
});

Deno.test("LogRateLimiter reports 0 when nothing was dropped", () => {
  const limiter = new LogRateLimiter(2, 1_000);
  limiter.allow("refused", 0);
  limiter.allow("refused", 1);

  assert.equal(limiter.allow("refused", 5_000), 0);
});

Deno.test("LogRateLimiter starts a window at windowMs exactly", () => {
  const limiter = new LogRateLimiter(1, 1_000);
  limiter.allow("refused", 500);
  limiter.allow("refused", 600);

  assert.equal(limiter.allow("refused", 1_499), -1);
  assert.equal(limiter.allow("refused", 1_500), 2);
});

Deno.test("LogRateLimiter counts drops per window, not in total", () => {
  const limiter = new LogRateLimiter(1, 1_000);
  limiter.allow("refused", 0);
  limiter.allow("refused", 1);
  limiter.allow("refused", 2);

  assert.equal(limiter.allow("refused", 1_000), 2);
  assert.equal(limiter.allow("refused", 1_001), -1);
  assert.equal(limiter.allow("refused", 2_000), 1);
  assert.equal(limiter.allow("refused", 3_000), 0);
});

Deno.test("LogRateLimiter limits each key on its own", () => {
  const limiter = new LogRateLimiter(1, 1_000);

  assert.equal(limiter.allow("port 80", 0), 0);
  assert.equal(limiter.allow("port 81", 0), 0);
  assert.equal(limiter.allow("port 80", 1), -1);
  assert.equal(limiter.allow("port 81", 1), -1);
  assert.equal(limiter.allow("port 81", 2), -1);
  assert.equal(limiter.allow("port 80", 1_000), 1);
  assert.equal(limiter.allow("port 81", 1_000), 2);
});

Deno.test("LogRateLimiter allows the first line of many keys", () => {
  const limiter = new LogRateLimiter(1, 1_000);

  for (let i = 0; i < 20_000; i++) {
    assert.equal(limiter.allow(`key ${i}`, i), 0);
  }
  // Keys still inside their window survive the pruning of old keys.
  assert.equal(limiter.allow("key 19999", 19_999), -1);
});

Deno.test("LogRateLimiter.takeSuppressed() returns counts of ended windows", () => {
  const limiter = new LogRateLimiter(2, 1_000);
  for (let i = 0; i < 7; i++) limiter.allow("refused", 100);
  limiter.allow("quiet", 100);

  assert.deepEqual(limiter.takeSuppressed(500), []);
  assert.deepEqual(limiter.takeSuppressed(1_100), [["refused", 5]]);
  assert.deepEqual(limiter.takeSuppressed(1_200), []);
  // Reported once: the next window starts without the old count.
  assert.equal(limiter.allow("refused", 1_300), 0);
});

Deno.test("LogRateLimiter.takeSuppressed() takes running windows at stop", () => {
  const limiter = new LogRateLimiter(1, 1_000);
  for (let i = 0; i < 4; i++) limiter.allow("refused", 100);

  assert.deepEqual(limiter.takeSuppressed(200, true), [["refused", 3]]);
});
