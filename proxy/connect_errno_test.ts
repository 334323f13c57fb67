import assert from "node:assert/strict";
import { checkConnectErrno } from "./connect_errno.ts";
import {
  EINPROGRESS,
  lastErrno,
  net,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
} from "../ffi/net.ts";
import { AF_INET, encodeSockAddr } from "./sockaddr.ts";

const ENOENT = 2;
const EAGAIN = 11;

function openSocket(): number {
  const fd = net().socket(
    AF_INET,
    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    0,
  );
  assert.ok(fd >= 0, `socket: errno ${lastErrno()}`);
  return fd;
}

function loopback(port: number): Uint8Array<ArrayBuffer> {
  return encodeSockAddr(new Uint8Array([127, 0, 0, 1]), port);
}

Deno.test("checkConnectErrno() passes EINPROGRESS on unchecked", () => {
  const fd = openSocket();
  try {
    assert.equal(checkConnectErrno(fd, loopback(9), EINPROGRESS), EINPROGRESS);
    // No second connect was made: this one is the socket's first.
    const address = loopback(9);
    assert.equal(net().connect(fd, address, address.length), -1);
    assert.equal(lastErrno(), EINPROGRESS);
  } finally {
    net().close(fd);
  }
});

for (const [name, wrong] of [["ENOENT", ENOENT], ["EAGAIN", EAGAIN]] as const) {
  Deno.test(`checkConnectErrno() finds a connect in progress behind ${name}`, async () => {
    using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const accepted = listener.accept();
    const fd = openSocket();
    try {
      const address = loopback(listener.addr.port);
      assert.equal(net().connect(fd, address, address.length), -1);
      assert.equal(lastErrno(), EINPROGRESS);
      const code = checkConnectErrno(fd, address, wrong);
      // Loopback may finish the handshake before the second call.
      assert.ok(code === EINPROGRESS || code === 0, `got errno ${code}`);
      (await accepted).close();
      assert.equal(checkConnectErrno(fd, address, wrong), 0);
    } finally {
      net().close(fd);
    }
  });
}

Deno.test("checkConnectErrno() reports the real failure behind ENOENT", () => {
  const fd = openSocket();
  try {
    // An IPv4 socket cannot connect to an IPv6 address.
    const v6 = encodeSockAddr(new Uint8Array([...new Array(15).fill(0), 1]), 9);
    assert.equal(net().connect(fd, v6, v6.length), -1);
    const real = lastErrno();
    assert.notEqual(real, ENOENT);
    assert.equal(checkConnectErrno(fd, v6, ENOENT), real);
  } finally {
    net().close(fd);
  }
});
