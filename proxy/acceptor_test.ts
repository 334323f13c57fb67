import assert from "node:assert/strict";
import { getLogger } from "@logtape/logtape";
import { Acceptor, LISTEN_BACKLOG } from "./acceptor.ts";
import { EventLoop } from "./event_loop.ts";
import { findListenerFd } from "../ffi/socket_fd.ts";
import { lastErrno, net } from "../ffi/net.ts";

const IPPROTO_TCP = 6;
const TCP_INFO = 11;
/** Offset of `tcpi_sacked`, which is the backlog of a listening socket. */
const TCPI_SACKED = 28;

function listenBacklog(fd: number): number {
  const info = new Uint8Array(256);
  const length = new Uint32Array([info.length]);
  const result = net().getsockopt(
    fd,
    IPPROTO_TCP,
    TCP_INFO,
    info,
    new Uint8Array(length.buffer),
  );
  assert.equal(result, 0, `getsockopt failed with errno ${lastErrno()}`);
  return new DataView(info.buffer).getUint32(TCPI_SACKED, true);
}

Deno.test("Acceptor raises the listen backlog", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fd = findListenerFd(listener);
  const loop = new EventLoop();
  try {
    const before = listenBacklog(fd);
    const acceptor = new Acceptor(
      loop,
      fd,
      (conn) => net().close(conn),
      getLogger(["test"]),
      "test",
    );
    acceptor.close();
    const somaxconn = Number(
      Deno.readTextFileSync("/proc/sys/net/core/somaxconn"),
    );
    assert.ok(before < LISTEN_BACKLOG, `Deno listened with ${before}`);
    assert.equal(listenBacklog(fd), Math.min(LISTEN_BACKLOG, somaxconn));
  } finally {
    listener.close();
    await loop.stop();
  }
});
