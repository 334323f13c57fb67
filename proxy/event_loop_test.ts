import assert from "node:assert/strict";
import { EventLoop, type Watched } from "./event_loop.ts";
import { lastErrno, net } from "../ffi/net.ts";

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

Deno.test("EventLoop drops events of a descriptor reused in one batch", async () => {
  const EFD_NONBLOCK = 0o4000;
  const EFD_CLOEXEC = 0o2000000;
  const increment = new Uint8Array(new BigUint64Array([1n]).buffer);
  const symbols = net();
  const loop = new EventLoop();
  const open = () => {
    const fd = symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    assert.ok(fd >= 0, `eventfd failed with errno ${lastErrno()}`);
    return fd;
  };
  const fds = [open(), open()];
  const extras: number[] = [];
  let reused: number | undefined;
  let staleCalls = 0;
  // The first handler to run closes the other descriptor and opens new ones
  // until one gets its number back, while the other's event is still queued
  // in the same batch.
  const onReady = (watched: Watched) => {
    if (reused !== undefined) return;
    const other = fds.find((fd) => fd !== watched.fd)!;
    loop.close(other);
    for (let i = 0; i < 64 && reused === undefined; i++) {
      const fd = open();
      if (fd === other) reused = fd;
      else extras.push(fd);
    }
    assert.equal(reused, other, "no new descriptor took the closed number");
    // Never written to, so only the closed descriptor's event can make it
    // readable. Its own first event reports it writable.
    loop.watch(reused!, (w) => {
      if (w.readable) staleCalls++;
    });
  };
  for (const fd of fds) loop.watch(fd, onReady);
  // Both become readable before the loop's first wait, so one batch has both.
  for (const fd of fds) assert.equal(symbols.write(fd, increment, 8), 8);
  loop.start();
  try {
    await new Promise<void>((resolve) => loop.after(50, resolve));
    assert.notEqual(reused, undefined, "no handler ran");
    assert.equal(
      staleCalls,
      0,
      "the closed descriptor's event reached the new one",
    );
  } finally {
    await loop.stop();
    for (const fd of [...fds, ...extras]) symbols.close(fd);
  }
});
