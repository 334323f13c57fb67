import assert from "node:assert/strict";
import { MIN_PASS_MS, PortCursor } from "./port_cursor.ts";

const RANGE = { low: 40_000, high: 40_007 };

/** Takes `count` ports, each `stepMs` after the one before. */
function takeMany(
  cursor: PortCursor,
  count: number,
  stepMs: number,
  from = 0,
): number[] {
  const ports: number[] = [];
  for (let i = 0; i < count; i++) ports.push(cursor.take(from + i * stepMs));
  return ports;
}

/** Rotates `ports` so that it starts at its lowest port. */
function fromLowest(ports: number[]): number[] {
  const start = ports.indexOf(Math.min(...ports));
  return [...ports.slice(start), ...ports.slice(0, start)];
}

Deno.test("PortCursor takes the low parity in turn", () => {
  const cursor = new PortCursor(RANGE, 0);
  const slow = MIN_PASS_MS;
  const ports = takeMany(cursor, 8, slow);
  assert.deepEqual(fromLowest(ports.slice(0, 4)), [
    40_000,
    40_002,
    40_004,
    40_006,
  ]);
  assert.deepEqual(ports.slice(4), ports.slice(0, 4));
  assert.equal(cursor.alternating, false);
});

Deno.test("PortCursor alternates parities after a fast pass", () => {
  const cursor = new PortCursor(RANGE, 0);
  const ports = takeMany(cursor, 12, 1);
  const parities = ports.map((port) => port % 2);
  assert.deepEqual(parities, [0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]);
  assert.deepEqual(fromLowest(ports.slice(4, 8)), [
    40_001,
    40_003,
    40_005,
    40_007,
  ]);
  assert.equal(cursor.alternating, true);
});

Deno.test("PortCursor returns to one parity after a slow pass", () => {
  const cursor = new PortCursor(RANGE, 0);
  takeMany(cursor, 4, 1);
  assert.equal(cursor.alternating, true);
  // The odd pass takes longer than the limit, so the even one follows and
  // stays.
  const ports = takeMany(cursor, 12, MIN_PASS_MS, 10);
  assert.equal(cursor.alternating, false);
  assert.deepEqual(
    ports.slice(4).map((port) => port % 2),
    new Array(8).fill(0),
  );
});

Deno.test("PortCursor skips the missing port of an odd-size range", () => {
  const cursor = new PortCursor({ low: 40_000, high: 40_004 }, 0);
  const ports = takeMany(cursor, 12, 1);
  for (const port of ports) {
    assert.ok(port >= 40_000, `port ${port}`);
    assert.ok(port <= 40_004, `port ${port}`);
  }
  assert.ok(ports.includes(40_001));
  assert.ok(ports.includes(40_003));
});

Deno.test("PortCursor serves a one-port range", () => {
  const cursor = new PortCursor({ low: 40_000, high: 40_000 }, 0);
  assert.deepEqual(takeMany(cursor, 3, 1), [40_000, 40_000, 40_000]);
});
