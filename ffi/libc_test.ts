import assert from "node:assert/strict";
import {
  closeFd,
  getSockOptInt,
  openReadOnly,
  OsError,
  setLingerZero,
  SO_LINGER,
  SOL_SOCKET,
} from "./libc.ts";
import { findConnFd } from "./socket_fd.ts";

Deno.test("setLingerZero() turns on lingering with no timeout", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using client = await Deno.connect({
    hostname: "127.0.0.1",
    port: listener.addr.port,
  });
  const fd = findConnFd(client);
  assert.equal(getSockOptInt(fd, SOL_SOCKET, SO_LINGER, 8), 0n);

  setLingerZero(fd);
  // struct linger { int l_onoff = 1; int l_linger = 0; } read as a u64
  assert.equal(getSockOptInt(fd, SOL_SOCKET, SO_LINGER, 8), 1n);
});

Deno.test("setLingerZero() fails for a closed descriptor", () => {
  assert.throws(() => setLingerZero(0x7fff), (error) => {
    assert.ok(error instanceof OsError);
    assert.equal(error.errno, 9);
    assert.equal(
      error.message,
      "setsockopt fd 32767 SO_LINGER: Bad file descriptor",
    );
    return true;
  });
});

Deno.test("openReadOnly() opens and closeFd() closes a file", () => {
  const fd = openReadOnly("/proc/self/ns/net");
  assert.ok(fd > 2);
  closeFd(fd);
  assert.throws(() => closeFd(fd), OsError);
});

Deno.test("openReadOnly() names the missing path", () => {
  assert.throws(() => openReadOnly("/nonexistent/anyport"), {
    message: 'open "/nonexistent/anyport": No such file or directory',
  });
});
