import assert from "node:assert/strict";
import { readLocalListeners } from "./local_listeners.ts";
import { getSockOptInt, SO_COOKIE, SOL_SOCKET } from "../ffi/libc.ts";
import { findListenerFd } from "../ffi/socket_fd.ts";

Deno.test("readLocalListeners() finds an IPv4 listener", () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;

  const found = readLocalListeners().filter((l) => l.port === port);

  assert.equal(found.length, 1);
  assert.deepEqual([...found[0]!.address], [127, 0, 0, 1]);
});

Deno.test("readLocalListeners() finds an IPv6 listener", () => {
  using listener = Deno.listen({ hostname: "::1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;

  const found = readLocalListeners().filter((l) => l.port === port);

  assert.equal(found.length, 1);
  assert.deepEqual([...found[0]!.address], [...Array(15).fill(0), 1]);
});

Deno.test("readLocalListeners() reads each socket's cookie", () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const fd = findListenerFd(listener);
  const cookie = getSockOptInt(fd, SOL_SOCKET, SO_COOKIE, 8);

  const found = readLocalListeners().filter((l) => l.port === port);

  assert.equal(found[0]?.cookie, cookie);
});

Deno.test("readLocalListeners() skips connected sockets", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  using client = await Deno.connect({ hostname: "127.0.0.1", port });
  using server = await listener.accept();
  const clientPort = (client.localAddr as Deno.NetAddr).port;

  const ports = readLocalListeners().map((l) => l.port);

  assert.equal(ports.filter((p) => p === port).length, 1);
  assert.equal(ports.includes(clientPort), false);
  assert.ok(server);
});
