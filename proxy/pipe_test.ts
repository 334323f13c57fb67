import assert from "node:assert/strict";
import { EventLoop, type Watched } from "./event_loop.ts";
import { Pipe, type PipeResult } from "./pipe.ts";
import { listenerFd, tcpPair } from "../ffi/_test_sockets.ts";
import {
  closeWithReset,
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  lastErrno,
  MSG_NOSIGNAL,
  net,
  SHUT_WR,
  socketError,
} from "../ffi/net.ts";

const ECONNRESET = 104;
const encoder = new TextEncoder();

/**
 * Opens the two connections of a pipe: the client's socket and its proxy
 * side, then the proxy's socket towards the target and the target's side.
 */
function openPipeSockets() {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fd = listenerFd(listener);
  const [clientPeer, clientFd] = tcpPair(listener, fd);
  const [targetFd, targetPeer] = tcpPair(listener, fd);
  return { listener, clientPeer, clientFd, targetFd, targetPeer };
}

/** Starts a pipe between the proxy's two sockets and returns its outcome. */
function startPipe(
  loop: EventLoop,
  clientFd: number,
  targetFd: number,
): Promise<PipeResult> {
  const done = Promise.withResolvers<PipeResult>();
  new Pipe(loop, loop.watch(clientFd), loop.watch(targetFd), done.resolve)
    .start();
  return done.promise;
}

function sendText(fd: number, text: string): void {
  const bytes = encoder.encode(text);
  assert.equal(net().send(fd, bytes, bytes.length, MSG_NOSIGNAL), bytes.length);
}

/** Reads what `fd` received until its peer closed or reset it. */
async function readAll(fd: number): Promise<string> {
  const buffer = new Uint8Array(4096);
  let text = "";
  for (let i = 0; i < 200; i++) {
    const n = net().recv(fd, buffer, buffer.length, 0);
    if (n > 0) {
      text += new TextDecoder().decode(buffer.subarray(0, n));
      continue;
    }
    if (n === 0 || lastErrno() !== 11) return text;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  throw new Error(`Socket still open after 2 s, received "${text}"`);
}

Deno.test("Pipe delivers a held reply after a target reset", async () => {
  const symbols = net();
  const { listener, clientPeer, clientFd, targetFd, targetPeer } =
    openPipeSockets();
  const trigger = symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  const loop = new EventLoop();
  try {
    const done = startPipe(loop, clientFd, targetFd);
    // Runs between the target's and the client's events of one batch, so the
    // reply is held for the batch's end when the target resets.
    loop.watch(trigger, (watched: Watched) => {
      if (watched.readable) closeWithReset(targetPeer);
    });
    loop.start();
    // Set from a loop timer, after the sockets' first events, so the kernel
    // reports all three in one batch, in this order.
    loop.after(20, () => {
      sendText(targetPeer, "reply");
      const increment = new Uint8Array(new BigUint64Array([1n]).buffer);
      assert.equal(symbols.write(trigger, increment, 8), 8);
      // With the FIN behind them, the client's bytes go on at once.
      sendText(clientPeer, "request");
      assert.equal(symbols.shutdown(clientPeer, SHUT_WR), 0);
    });
    assert.equal(await readAll(clientPeer), "reply");
    const result = await done;
    assert.equal(result.end, "target reset");
    assert.equal(result.received, 5);
  } finally {
    await loop.stop();
    listener.close();
    symbols.close(clientPeer);
    symbols.close(trigger);
  }
});

Deno.test("Pipe counts a filling receive queue as activity", async () => {
  const symbols = net();
  const { listener, clientPeer, clientFd, targetFd, targetPeer } =
    openPipeSockets();
  // The loop never runs, so the pipe reads nothing: bytes the client sends
  // stay in the receive queue, as when the target side is full.
  const loop = new EventLoop();
  try {
    const pipe = new Pipe(
      loop,
      loop.watch(clientFd),
      loop.watch(targetFd),
      () => {},
    );
    pipe.start();
    const quiet = pipe.lastActive;
    sendText(clientPeer, "a");
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(pipe.checkIdle(quiet + 1_000, quiet - 1), false);
    assert.equal(pipe.lastActive, quiet, "the first sample is no activity");

    sendText(clientPeer, "bb");
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.equal(pipe.checkIdle(quiet + 2_000, quiet - 1), false);
    assert.equal(pipe.lastActive, quiet + 2_000, "the queue grew");

    // Nothing moved since: past the timeout, the pipe resets both sides.
    assert.equal(pipe.checkIdle(quiet + 9_000, quiet + 5_000), true);
  } finally {
    await loop.stop();
    listener.close();
    symbols.close(clientPeer);
    symbols.close(targetPeer);
  }
});

/**
 * Sends from `fd` for `ms` milliseconds, as fast as the socket takes bytes,
 * and returns how many it took.
 */
async function flood(fd: number, ms: number): Promise<number> {
  const chunk = new Uint8Array(64 * 1024);
  const until = Date.now() + ms;
  let total = 0;
  while (Date.now() < until) {
    const n = net().send(fd, chunk, chunk.length, MSG_NOSIGNAL);
    if (n > 0) total += n;
    else await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return total;
}

Deno.test("Pipe passes on a reset while the other side does not read", async (t) => {
  for (const side of ["client", "target"] as const) {
    await t.step(`${side} reset`, async () => {
      const symbols = net();
      const { listener, clientPeer, clientFd, targetFd, targetPeer } =
        openPipeSockets();
      const [sender, reader] = side === "client"
        ? [clientPeer, targetPeer]
        : [targetPeer, clientPeer];
      const loop = new EventLoop();
      try {
        const done = startPipe(loop, clientFd, targetFd);
        loop.start();
        // The reader never reads, so the pipe ends up holding bytes back.
        assert.ok(await flood(sender, 300) > 0);
        closeWithReset(sender);

        // Delivery of the bytes kept back gives up after SALVAGE_LIMIT_MS.
        const timeout = Promise.withResolvers<"timed out">();
        const timer = setTimeout(() => timeout.resolve("timed out"), 4_000);
        const result = await Promise.race([done, timeout.promise]);
        clearTimeout(timer);
        assert.notEqual(result, "timed out", "the pipe did not end");
        assert.equal((result as PipeResult).end, `${side} reset`);
        assert.equal(
          socketError(reader),
          ECONNRESET,
          "the reader was not reset",
        );
      } finally {
        await loop.stop();
        listener.close();
        symbols.close(reader);
      }
    });
  }
});
