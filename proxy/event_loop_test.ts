import assert from "node:assert/strict";
import { EventLoop } from "./event_loop.ts";

Deno.test("EventLoop.after() fires a timer while the loop is idle", async () => {
  const loop = new EventLoop();
  loop.start();
  try {
    const started = Date.now();
    const fired = await new Promise<number>((resolve) => {
      // Set from a macrotask, while the loop waits on its worker thread.
      setTimeout(() => loop.after(50, () => resolve(Date.now())), 20);
    });
    assert.ok(fired - started >= 70, `fired after ${fired - started} ms`);
  } finally {
    await loop.stop();
  }
});

Deno.test("EventLoop.after() fires timers of different lengths in order", async () => {
  const loop = new EventLoop();
  loop.start();
  try {
    const order: string[] = [];
    await new Promise<void>((resolve) => {
      loop.after(60, () => {
        order.push("long");
        resolve();
      });
      loop.after(10, () => order.push("short"));
    });
    assert.deepEqual(order, ["short", "long"]);
  } finally {
    await loop.stop();
  }
});

Deno.test("Deadline.cancel() keeps a timer from firing", async () => {
  const loop = new EventLoop();
  loop.start();
  try {
    let fired = false;
    loop.after(10, () => fired = true).cancel();
    await new Promise<void>((resolve) => loop.after(40, resolve));
    assert.equal(fired, false);
  } finally {
    await loop.stop();
  }
});

Deno.test("EventLoop.defer() runs a task after the current batch", async () => {
  const loop = new EventLoop();
  loop.start();
  try {
    await new Promise<void>((resolve) => {
      loop.after(0, () => loop.defer(resolve));
    });
  } finally {
    await loop.stop();
  }
});
