import assert from "node:assert/strict";
import { findListenerFd, getSockName } from "./socket_fd.ts";

Deno.test("findListenerFd() finds the listening socket", () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const fd = findListenerFd(listener);
  const local = getSockName(fd);
  assert.equal(local?.port, listener.addr.port);
  assert.deepEqual(local?.address, new Uint8Array([127, 0, 0, 1]));
});

Deno.test("findListenerFd() finds a v4-mapped IPv6 listener", () => {
  using listener = Deno.listen({ hostname: "::ffff:127.0.0.1", port: 0 });
  const local = getSockName(findListenerFd(listener));
  assert.equal(local?.family, 10);
  assert.equal(local?.port, listener.addr.port);
});

Deno.test("findListenerFd() fails for a closed listener", () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  assert.throws(() => findListenerFd(listener), {
    message: `Cannot find the descriptor of listener 127.0.0.1:${port}: ` +
      "no socket matches",
  });
});

Deno.test("getSockName() returns undefined for a non-socket", () => {
  assert.equal(getSockName(0x7fff), undefined);
});
