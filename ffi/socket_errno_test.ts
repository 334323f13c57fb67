import assert from "node:assert/strict";
import { recvErrno, sendErrno } from "./socket_errno.ts";
import { listenerFd, tcpPair } from "./_test_sockets.ts";
import { closeWithReset, EAGAIN, MSG_NOSIGNAL, net } from "./net.ts";

const ENOENT = 2;
const ECONNRESET = 104;
const EPIPE = 32;

const buffer = new Uint8Array(64);

/** Returns the main thread's errno as a writable cell, to plant a wrong value. */
function errnoCell(): Int32Array {
  const libc = Deno.dlopen("libc.so.6", {
    __errno_location: { parameters: [], result: "pointer" },
  });
  const pointer = libc.symbols.__errno_location();
  assert.ok(pointer !== null);
  // errno stays valid while the thread lives, after the library closes.
  const cell = new Int32Array(
    Deno.UnsafePointerView.getArrayBuffer(pointer, 4),
  );
  libc.close();
  return cell;
}

/** Runs `body` with a connected pair of raw descriptors, closed after. */
function withPair(body: (near: number, far: number) => void): void {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [near, far] = tcpPair(listener, listenerFd(listener));
  try {
    body(near, far);
  } finally {
    net().close(near);
    net().close(far);
  }
}

Deno.test("recvErrno() finds an empty socket behind ENOENT", () => {
  const errno = errnoCell();
  withPair((near) => {
    assert.equal(net().recv(near, buffer, buffer.length, 0), -1);
    errno[0] = ENOENT;
    assert.equal(recvErrno(near), EAGAIN);
  });
});

Deno.test("recvErrno() finds waiting bytes behind ENOENT", () => {
  const errno = errnoCell();
  withPair((near, far) => {
    assert.equal(net().recv(near, buffer, buffer.length, 0), -1);
    assert.equal(net().send(far, buffer, 8, MSG_NOSIGNAL), 8);
    errno[0] = ENOENT;
    assert.equal(recvErrno(near), EAGAIN);
    // The peek left the bytes for the next read.
    assert.equal(net().recv(near, buffer, buffer.length, 0), 8);
  });
});

Deno.test("recvErrno() keeps the error of a reset connection", () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [near, far] = tcpPair(listener, listenerFd(listener));
  try {
    closeWithReset(far);
    assert.equal(net().recv(near, buffer, buffer.length, 0), -1);
    assert.equal(recvErrno(near), ECONNRESET);
  } finally {
    net().close(near);
  }
});

Deno.test("recvErrno() keeps an error read wrong on a reset connection", () => {
  const errno = errnoCell();
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [near, far] = tcpPair(listener, listenerFd(listener));
  try {
    closeWithReset(far);
    assert.equal(net().recv(near, buffer, buffer.length, 0), -1);
    errno[0] = ENOENT;
    assert.equal(recvErrno(near), ENOENT);
  } finally {
    net().close(near);
  }
});

Deno.test("sendErrno() finds an open socket behind ENOENT", () => {
  const errno = errnoCell();
  withPair((near) => {
    errno[0] = ENOENT;
    assert.equal(sendErrno(near), EAGAIN);
  });
});

Deno.test("sendErrno() keeps the error of a reset connection", () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [near, far] = tcpPair(listener, listenerFd(listener));
  try {
    closeWithReset(far);
    assert.equal(net().send(near, buffer, 8, MSG_NOSIGNAL), -1);
    const code = sendErrno(near);
    assert.ok(code === ECONNRESET || code === EPIPE, `got errno ${code}`);
  } finally {
    net().close(near);
  }
});
