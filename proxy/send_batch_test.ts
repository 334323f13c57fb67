import assert from "node:assert/strict";
import { EventLoop } from "./event_loop.ts";
import { SendBatch } from "./send_batch.ts";
import { EFD_CLOEXEC, EFD_NONBLOCK, net } from "../ffi/net.ts";

const ONE = new Uint8Array(new BigUint64Array([1n]).buffer);

/** Runs `onBatch` from the handlers of one batch with two events. */
async function inOneBatch(
  onBatch: (loop: EventLoop, handler: number) => void,
): Promise<EventLoop> {
  const symbols = net();
  const loop = new EventLoop();
  const fds = [0, 1].map(() => symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  fds.forEach((fd, i) =>
    loop.watch(fd, (watched) => {
      if (watched.readable) onBatch(loop, i);
    })
  );
  loop.start();
  // From a timer, after the first batch took the first events, so both
  // become readable before the next wait.
  await new Promise<void>((resolve) =>
    loop.after(10, () => {
      for (const fd of fds) assert.equal(symbols.write(fd, ONE, 8), 8);
      resolve();
    })
  );
  await new Promise<void>((resolve) => loop.after(30, resolve));
  await loop.stop();
  for (const fd of fds) symbols.close(fd);
  return loop;
}

Deno.test("SendBatch sends after every handler", async () => {
  const order: string[] = [];
  let batch: SendBatch | undefined;
  await inOneBatch((loop, handler) => {
    batch ??= new SendBatch(loop, 4, 16);
    assert.ok(batch.buffer() !== undefined, "no buffer while dispatching");
    batch.queue({ sendQueued: () => order.push(`send ${handler}`) });
    order.push(`handler ${handler}`);
  });
  assert.deepEqual(order, ["handler 0", "handler 1", "send 0", "send 1"]);
});

Deno.test("SendBatch lends no buffer outside handlers or when full", async () => {
  const seen: (Uint8Array | undefined)[] = [];
  let outside: Uint8Array | undefined = new Uint8Array(1);
  await inOneBatch((loop, handler) => {
    if (handler !== 0) return;
    const batch = new SendBatch(loop, 2, 16);
    for (let i = 0; i < 3; i++) {
      const buffer = batch.buffer();
      seen.push(buffer);
      if (buffer !== undefined) batch.queue({ sendQueued: () => {} });
    }
    loop.after(0, () => outside = batch.buffer());
  });
  assert.equal(seen.length, 3);
  assert.notEqual(seen[0], seen[1], "two queued sends share a buffer");
  assert.equal(seen[2], undefined);
  assert.equal(outside, undefined);
});
