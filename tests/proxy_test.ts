import assert from "node:assert/strict";
import net from "node:net";
import {
  assertReplyThenReset,
  closeQuietly,
  connect,
  delay,
  drain,
  echoServer,
  FAST_SETTINGS,
  freePorts,
  inTestNamespace,
  isRoot,
  nameServer,
  readAll,
  type ReadEnd,
  readToEnd,
  roundTrip,
  TestProxy,
  TestServer,
  waitFor,
  writeAll,
} from "./helpers.ts";

Deno.test("proxy routes each port to its app", async () => {
  await using a = nameServer("app-a");
  await using b = nameServer("app-b");
  const [p1, p2, p3] = freePorts(3);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [
      { Name: "a", Ports: [p1, p2], Targets: [a.target] },
      { Name: "b", Ports: [p3], Targets: [b.target] },
    ],
  });
  assert.equal(await roundTrip(p1!, ""), "app-a");
  assert.equal(await roundTrip(p2!, ""), "app-a");
  assert.equal(await roundTrip(p3!, ""), "app-b");
});

Deno.test("proxy spreads connections across targets", async () => {
  await using t1 = nameServer("t1");
  await using t2 = nameServer("t2");
  await using t3 = nameServer("t3");
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{
      Name: "a",
      Ports: [port],
      Targets: [t1.target, t2.target, t3.target],
    }],
  });
  const counts = new Map<string, number>();
  for (let i = 0; i < 300; i++) {
    const name = await roundTrip(port!, "");
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  for (const name of ["t1", "t2", "t3"]) {
    const count = counts.get(name) ?? 0;
    assert.ok(
      count >= 50,
      `${name} got ${count} of 300 connections; want at least 50`,
    );
  }
});

Deno.test("proxy fails over from a refusing target", async () => {
  await using good = nameServer("good");
  const [port, refusing] = freePorts(2);
  await using proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Balance: "round-robin",
    Apps: [{
      Name: "a",
      Ports: [port],
      Targets: [`127.0.0.1:${refusing}`, good.target],
    }],
  });
  for (let i = 0; i < 4; i++) assert.equal(await roundTrip(port!, ""), "good");
  const refused = proxy.proxy.config.apps[0]!.targets[0]!;
  assert.equal(refused.port, refusing);
});

Deno.test("proxy fails over from an unresolvable target", async () => {
  await using good = nameServer("good");
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Balance: "round-robin",
    Apps: [{
      Name: "a",
      Ports: [port],
      Targets: ["no-such-host.invalid:80", good.target],
    }],
  });
  for (let i = 0; i < 4; i++) {
    const started = Date.now();
    assert.equal(await roundTrip(port!, ""), "good");
    const elapsed = Date.now() - started;
    assert.ok(
      elapsed < FAST_SETTINGS.ConnectTimeoutMs + 400,
      `took ${elapsed} ms`,
    );
  }
});

Deno.test({
  name: "proxy fails over from a blackholed target within the connect timeout",
  ignore: !isRoot() || !hasNft(),
  async fn() {
    await using good = nameServer("good");
    const [port, blackholed] = freePorts(2);
    await using _rule = await dropSyns(blackholed!);
    await using _proxy = await TestProxy.start({
      ...FAST_SETTINGS,
      Balance: "round-robin",
      Apps: [{
        Name: "a",
        Ports: [port],
        Targets: [`127.0.0.1:${blackholed}`, good.target],
      }],
    });
    const started = Date.now();
    assert.equal(await roundTrip(port!, ""), "good");
    const elapsed = Date.now() - started;
    assert.ok(
      elapsed < FAST_SETTINGS.ConnectTimeoutMs + 500,
      `first connection took ${elapsed} ms; want under ${
        FAST_SETTINGS.ConnectTimeoutMs + 500
      }`,
    );
    // The blackholed target is now in back-off, so no client waits for it.
    const again = Date.now();
    for (let i = 0; i < 3; i++) {
      assert.equal(await roundTrip(port!, ""), "good");
    }
    assert.ok(
      Date.now() - again < 300,
      `back-off not applied: ${Date.now() - again} ms`,
    );
  },
});

Deno.test("proxy closes the client promptly when all targets are down", async () => {
  const [port, dead1, dead2] = freePorts(3);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{
      Name: "a",
      Ports: [port],
      Targets: [`127.0.0.1:${dead1}`, `127.0.0.1:${dead2}`],
    }],
  });
  for (let i = 0; i < 3; i++) {
    const started = Date.now();
    const conn = await connect(port!);
    const reply = await readAll(conn).catch(() => new Uint8Array());
    closeQuietly(conn);
    assert.equal(reply.length, 0);
    assert.ok(
      Date.now() - started < 300,
      `client held ${Date.now() - started} ms`,
    );
  }
});

Deno.test("proxy skips a failed target while another is up, until its back-off ends", async () => {
  const [port, later, spare] = freePorts(3);
  await using _spare = echoServer("127.0.0.1", spare);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    BackoffMs: 300,
    Balance: "round-robin",
    Apps: [{
      Name: "a",
      Ports: [port],
      Targets: [`127.0.0.1:${later}`, `127.0.0.1:${spare}`],
    }],
  });
  // Round-robin sends one of two clients to the refusing target first.
  assert.equal(await roundTrip(port!, "x"), "x");
  assert.equal(await roundTrip(port!, "x"), "x");
  await using server = echoServer("127.0.0.1", later);
  for (let i = 0; i < 4; i++) assert.equal(await roundTrip(port!, "x"), "x");
  assert.equal(server.accepted, 0, "target reached during its back-off");
  await delay(350);
  for (let i = 0; i < 4; i++) assert.equal(await roundTrip(port!, "x"), "x");
  assert.ok(server.accepted > 0, "target not tried after its back-off");
});

Deno.test("proxy brings every target back after an outage of all of them", async () => {
  const [port, first, second] = freePorts(3);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    BackoffMs: 1_000,
    MaxBackoffMs: 60_000,
    Balance: "round-robin",
    Apps: [{
      Name: "a",
      Ports: [port],
      Targets: [`127.0.0.1:${first}`, `127.0.0.1:${second}`],
    }],
  });
  // Every client of the outage tries both targets; none may lengthen their
  // back-off towards the 60 s maximum.
  for (let i = 0; i < 20; i++) assert.equal(await roundTrip(port!, "x"), "");
  await using one = echoServer("127.0.0.1", first);
  await using two = echoServer("127.0.0.1", second);

  for (let i = 0; i < 10; i++) assert.equal(await roundTrip(port!, "y"), "y");
  assert.ok(one.accepted > 0, `first target got ${one.accepted}`);
  assert.ok(two.accepted > 0, `second target got ${two.accepted}`);
});

Deno.test("proxy tries a failed target at once when no other target is up", async () => {
  const [port, later] = freePorts(2);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    BackoffMs: 60_000,
    MaxBackoffMs: 60_000,
    Apps: [{ Name: "a", Ports: [port], Targets: [`127.0.0.1:${later}`] }],
  });
  assert.equal(await roundTrip(port!, "x"), "");
  assert.equal(await roundTrip(port!, "x"), "", "a refusing target");
  await using _server = echoServer("127.0.0.1", later);
  // In back-off for a minute, but it is the app's only target.
  assert.equal(await roundTrip(port!, "back"), "back");
});

Deno.test({
  name: "proxy backs off once for connects in flight together",
  ignore: !isRoot() || !hasNft(),
  async fn() {
    await using slow = nameServer("slow");
    await using spare = nameServer("spare");
    const slowPort = slow.port;
    const [port] = freePorts(1);
    await using _proxy = await TestProxy.start({
      ...FAST_SETTINGS,
      ConnectTimeoutMs: 200,
      BackoffMs: 500,
      Balance: "round-robin",
      Apps: [{
        Name: "a",
        Ports: [port],
        Targets: [slow.target, spare.target],
      }],
    });
    {
      await using _rule = await dropSyns(slowPort);
      // About half of the clients try "slow" first, and their connects
      // time out together.
      const replies = await Promise.all(
        Array.from({ length: 10 }, () => roundTrip(port!, "x")),
      );
      assert.deepEqual(replies, Array(10).fill("spare"));
    }

    // Counted once, the back-off ends 500 ms after the timeouts. Counted
    // per connect, it would double four times, to 8 s.
    await delay(700);
    const later: string[] = [];
    for (let i = 0; i < 6; i++) later.push(await roundTrip(port!, "x"));
    assert.ok(later.includes("slow"), `replies after the back-off: ${later}`);
  },
});

Deno.test("proxy passes a half-close and keeps the other direction open", async () => {
  // The target reads everything until the client's FIN, then replies.
  await using target = new TestServer(async (conn) => {
    const request = await readAll(conn);
    await writeAll(
      conn,
      new TextEncoder().encode(`got ${request.length} bytes`),
    );
    await conn.closeWrite();
  });
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const conn = await connect(port!);
  await writeAll(conn, new Uint8Array(100_000));
  await conn.closeWrite();
  const reply = new TextDecoder().decode(await readAll(conn));
  closeQuietly(conn);
  assert.equal(reply, "got 100000 bytes");
});

Deno.test({
  name: "proxy stop resets a client still waiting for its target",
  ignore: !isRoot() || !hasNft(),
  async fn() {
    const [port, first, second] = freePorts(3);
    await using _first = await dropSyns(first!);
    await using _second = await dropSyns(second!);
    const proxy = await TestProxy.start({
      ...FAST_SETTINGS,
      ConnectTimeoutMs: 10_000,
      DrainTimeoutMs: 100,
      Apps: [{
        Name: "a",
        Ports: [port],
        Targets: [`127.0.0.1:${first}`, `127.0.0.1:${second}`],
      }],
    });
    const conn = await connect(port!);
    await delay(100);

    const started = Date.now();
    await proxy[Symbol.asyncDispose]();
    const elapsed = Date.now() - started;
    assert.ok(elapsed < 1_000, `stop took ${elapsed} ms`);

    let clientError: unknown;
    try {
      await drain(conn);
    } catch (error) {
      clientError = error;
    }
    closeQuietly(conn);
    assert.ok(
      clientError instanceof Deno.errors.ConnectionReset,
      `client saw ${clientError}; want ConnectionReset`,
    );
  },
});

Deno.test("proxy turns a client reset into a target reset", async () => {
  let targetError: unknown;
  const sawEnd = Promise.withResolvers<void>();
  await using target = new TestServer(async (conn) => {
    try {
      await drain(conn);
    } catch (error) {
      targetError = error;
    }
    sawEnd.resolve();
  });
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const client = net.connect(port!, "127.0.0.1");
  await new Promise((resolve) => client.once("connect", resolve));
  client.write("hello");
  await delay(100);
  client.resetAndDestroy();
  await sawEnd.promise;
  assert.ok(
    targetError instanceof Deno.errors.ConnectionReset,
    `target saw ${targetError}; want ConnectionReset`,
  );
});

Deno.test("proxy turns a target reset into a client reset", async () => {
  const target = net.createServer((socket) => {
    socket.once("data", () => socket.resetAndDestroy());
  });
  await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
  const targetPort = (target.address() as net.AddressInfo).port;
  const [port] = freePorts(1);
  try {
    await using _proxy = await TestProxy.start({
      ...FAST_SETTINGS,
      Apps: [{
        Name: "a",
        Ports: [port],
        Targets: [`127.0.0.1:${targetPort}`],
      }],
    });
    const conn = await connect(port!);
    await writeAll(conn, new Uint8Array(1000));
    let clientError: unknown;
    try {
      await drain(conn);
    } catch (error) {
      clientError = error;
    }
    closeQuietly(conn);
    assert.ok(
      clientError instanceof Deno.errors.ConnectionReset,
      `client saw ${clientError}; want ConnectionReset`,
    );
  } finally {
    await new Promise((resolve) => target.close(resolve));
  }
});

Deno.test("proxy delivers a reply sent just before a target reset", async () => {
  const reply = "x".repeat(10_000);
  const target = net.createServer((socket) => {
    socket.once("data", () => {
      socket.write(reply, () => socket.resetAndDestroy());
    });
  });
  await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
  const targetPort = (target.address() as net.AddressInfo).port;
  const [port] = freePorts(1);
  try {
    await using _proxy = await TestProxy.start({
      ...FAST_SETTINGS,
      Apps: [{
        Name: "a",
        Ports: [port],
        Targets: [`127.0.0.1:${targetPort}`],
      }],
    });
    for (let i = 0; i < 20; i++) {
      const conn = await connect(port!);
      await writeAll(conn, new TextEncoder().encode("request"));
      const end = await readToEnd(conn);
      closeQuietly(conn);
      assertReplyThenReset(end, reply.length, `connection ${i}`);
    }
  } finally {
    await new Promise((resolve) => target.close(resolve));
  }
});

Deno.test("proxy copies 64 MiB each way intact", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const size = 64 * 1024 * 1024;
  const chunk = new Uint8Array(1024 * 1024);
  const conn = await connect(port!);
  let sentHash = 0x811c9dc5;
  let receivedHash = 0x811c9dc5;
  let received = 0;
  const reader = (async () => {
    const buffer = new Uint8Array(256 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      receivedHash = fnv1a(buffer.subarray(0, n), receivedHash);
      received += n;
    }
  })();
  for (let sent = 0; sent < size; sent += chunk.length) {
    crypto.getRandomValues(chunk.subarray(0, 65536));
    chunk.copyWithin(65536, 0, chunk.length - 65536);
    sentHash = fnv1a(chunk, sentHash);
    await writeAll(conn, chunk);
  }
  await conn.closeWrite();
  await reader;
  closeQuietly(conn);
  assert.equal(received, size);
  assert.equal(receivedHash, sentHash);
});

Deno.test("proxy serves IPv6 clients and IPv6 targets", async () => {
  await using target = echoServer("::1");
  // Free on the wildcard the proxy binds, which covers IPv4 too.
  const [port] = freePorts(1, "::");
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    ListenAddress: "::",
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  assert.equal(await roundTrip(port!, "six", "::1"), "six");
  assert.equal(await roundTrip(port!, "four", "127.0.0.1"), "four");
});

Deno.test("proxy reload adds and removes ports and changes targets", async () => {
  await using first = nameServer("first");
  await using second = nameServer("second");
  await using echo = echoServer();
  const [kept, removed, added] = freePorts(3);
  await using proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [
      { Name: "echo", Ports: [kept], Targets: [echo.target] },
      { Name: "named", Ports: [removed], Targets: [first.target] },
    ],
  });
  // A session that stays open across the reload.
  const session = await connect(kept!);
  const ping = async (text: string) => {
    await writeAll(session, new TextEncoder().encode(text));
    const buffer = new Uint8Array(text.length);
    let got = 0;
    while (got < text.length) {
      const n = await session.read(buffer.subarray(got));
      assert.notEqual(n, null, "session closed by the reload");
      got += n!;
    }
    return new TextDecoder().decode(buffer);
  };
  assert.equal(await ping("before"), "before");
  assert.equal(await roundTrip(removed!, ""), "first");

  const changes = await proxy.reload({
    ...FAST_SETTINGS,
    Apps: [
      { Name: "echo", Ports: [kept], Targets: [echo.target] },
      { Name: "named", Ports: [added], Targets: [second.target] },
    ],
  });
  assert.ok(changes.length >= 3, `changes: ${changes.join("; ")}`);
  assert.equal(await ping("after"), "after");
  assert.equal(await roundTrip(added!, ""), "second");
  await assert.rejects(() => connect(removed!), Deno.errors.ConnectionRefused);
  assert.equal(await ping("still"), "still");
  closeQuietly(session);
});

Deno.test("proxy reload that cannot open a port keeps the old config", async () => {
  await using echo = echoServer();
  const [port] = freePorts(1);
  await using proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{ Name: "echo", Ports: [port], Targets: [echo.target] }],
  });
  await using busy = echoServer();
  await assert.rejects(
    () =>
      proxy.reload({
        ...FAST_SETTINGS,
        Apps: [{
          Name: "echo",
          Ports: [port, busy.port],
          Targets: [echo.target],
        }],
      }),
    /Cannot listen on 127\.0\.0\.1:\d+/,
  );
  assert.deepEqual(proxy.proxy.config.apps[0]!.ports, [{
    first: port,
    last: port,
  }]);
  assert.equal(await roundTrip(port!, "ok"), "ok");
});

/** FNV-1a over a stream of chunks: pass the previous result as `hash`. */
Deno.test("proxy holds connections past MaxConnections in the backlog", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  await using proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    MaxConnections: 2,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const open = [await connect(port!), await connect(port!)];
  for (const conn of open) {
    await writeAll(conn, new TextEncoder().encode("held"));
    assert.equal(await readText(conn, 4), "held");
  }
  assert.equal(proxy.proxy.connections, 2);

  // The kernel completes the handshake, but the proxy does not accept.
  let thirdDone = false;
  const third = roundTrip(port!, "third").finally(() => thirdDone = true);
  await delay(300);
  assert.equal(thirdDone, false);
  assert.equal(proxy.proxy.connections, 2);

  closeQuietly(open[0]!);
  assert.equal(await third, "third");
  closeQuietly(open[1]!);
});

Deno.test("proxy sends an alias app's clients straight to the other app's targets", async () => {
  await using target = echoServer();
  const [alias, web] = freePorts(2);
  await using proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    // Through the proxy's own port, each client would take two slots, and
    // the second client would wait for the first to end.
    MaxConnections: 2,
    Apps: [
      { Name: "alias", Ports: [alias], Targets: [`127.0.0.1:${web}`] },
      { Name: "web", Ports: [web], Targets: [target.target] },
    ],
  });
  const open = [await connect(alias!), await connect(alias!)];
  try {
    for (const conn of open) {
      await writeAll(conn, new TextEncoder().encode("held"));
      const reply = await Promise.race([readText(conn, 4), delay(3_000)]);
      assert.equal(reply, "held");
    }
    assert.equal(proxy.proxy.connections, 2);
    assert.equal(target.accepted, 2);
  } finally {
    for (const conn of open) closeQuietly(conn);
  }
});

Deno.test("proxy resets connections past an app's MaxConnections", async () => {
  await using target = echoServer();
  const [limited, other] = freePorts(2);
  const apps = [
    { Name: "a", Ports: [limited], Targets: [target.target] },
    { Name: "b", Ports: [other], Targets: [target.target] },
  ];
  await using proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{ ...apps[0], MaxConnections: 2 }, apps[1]],
  });
  const open = [await connect(limited!), await connect(limited!)];
  for (const conn of open) {
    await writeAll(conn, new TextEncoder().encode("held"));
    assert.equal(await readText(conn, 4), "held");
  }

  // A third connection to the app is reset; another app is not limited.
  await assert.rejects(roundTrip(limited!, "third"), /reset/i);
  assert.equal(await roundTrip(other!, "other"), "other");

  closeQuietly(open[0]!);
  await waitFor(
    async () => await roundTrip(limited!, "later").catch(() => "") === "later",
    2_000,
    "a free slot",
  );

  // A reload keeps the count of the open connections.
  await proxy.reload({
    ...FAST_SETTINGS,
    Apps: [{ ...apps[0], MaxConnections: 1 }, apps[1]],
  });
  await assert.rejects(roundTrip(limited!, "full"), /reset/i);
  closeQuietly(open[1]!);
  await waitFor(
    async () => await roundTrip(limited!, "after").catch(() => "") === "after",
    2_000,
    "the slot after the reload",
  );
});

Deno.test("proxy reload names a new connection limit from more ports", async () => {
  await using target = echoServer();
  const ports = freePorts(3);
  const config = (count: number) => ({
    ...FAST_SETTINGS,
    Apps: [{
      Name: "a",
      Ports: ports.slice(0, count),
      Targets: [target.target],
    }],
  });
  await using proxy = await TestProxy.start(config(1));
  const before = proxy.proxy.maxConnections;

  const changes = await proxy.reload(config(3));

  assert.equal(proxy.proxy.maxConnections, before - 1);
  assert.ok(
    changes.includes(
      `connection limit from the open-file limit: ${before} -> ${before - 1}`,
    ),
    changes.join("; "),
  );
});

Deno.test("proxy keeps accepting after clients reset before accept", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  // Node sends the reset as soon as each connection is established.
  await Promise.all(Array.from({ length: 100 }, () => {
    const socket = net.connect(port!, "127.0.0.1");
    socket.on("error", () => {});
    socket.resetAndDestroy();
    return new Promise((resolve) => socket.once("close", resolve));
  }));
  const started = Date.now();
  assert.equal(await roundTrip(port!, "next"), "next");
  const elapsed = Date.now() - started;
  assert.ok(elapsed < 500, `next client waited ${elapsed} ms`);
});

Deno.test("proxy keeps a slow but steady reader past the idle timeout", async () => {
  const size = 1024 * 1024;
  await using target = new TestServer(async (conn) => {
    await writeAll(conn, new Uint8Array(size));
    await conn.closeWrite();
    await drain(conn);
  });
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    IdleTimeoutMs: 200,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const conn = await connect(port!);
  const buffer = new Uint8Array(32 * 1024);
  let received = 0;
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    received += n;
    await delay(25);
  }
  closeQuietly(conn);
  assert.equal(received, size);
});

Deno.test("proxy closes a connection idle past the timeout", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    IdleTimeoutMs: 200,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  // Timed from before the connect, because the proxy's idle clock starts at
  // its accept, which can come before the connect completes on this side.
  const started = Date.now();
  const conn = await connect(port!);
  const received = await drain(conn);
  closeQuietly(conn);
  const elapsed = Date.now() - started;
  assert.equal(received, 0);
  assert.ok(elapsed >= 200, `closed after ${elapsed} ms, before the timeout`);
  assert.ok(elapsed < 1_500, `closed after ${elapsed} ms, too late`);
});

Deno.test("proxy closes at the half-close timeout", async () => {
  // A target that accepts and then neither reads nor replies.
  await using target = new TestServer(async (conn) => {
    await delay(5_000);
    closeQuietly(conn);
  });
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    HalfCloseTimeoutMs: 300,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const conn = await connect(port!);
  await writeAll(conn, new TextEncoder().encode("request"));
  const started = Date.now();
  await conn.closeWrite();

  const received = await drain(conn);
  closeQuietly(conn);
  const elapsed = Date.now() - started;

  assert.equal(received, 0);
  assert.ok(elapsed >= 300, `closed after ${elapsed} ms, before the timeout`);
  assert.ok(elapsed < 2_000, `closed after ${elapsed} ms, too late`);
});

Deno.test("proxy keeps half-closed connections by default", async () => {
  await using target = new TestServer(async (conn) => {
    await delay(1_000);
    await writeAll(conn, new TextEncoder().encode("late"));
    await conn.closeWrite();
  });
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    IdleTimeoutMs: 3_000,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const conn = await connect(port!);
  await conn.closeWrite();

  const reply = new TextDecoder().decode(await readAll(conn));
  closeQuietly(conn);

  assert.equal(reply, "late");
});

function fnv1a(data: Uint8Array, hash: number): number {
  for (let i = 0; i < data.length; i++) {
    hash = Math.imul(hash ^ data[i]!, 0x01000193);
  }
  return hash >>> 0;
}

function hasNft(): boolean {
  try {
    return new Deno.Command("nft", { args: ["--version"], stdout: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

/** Drops SYNs to a loopback port with nftables, until disposed. */
async function dropSyns(port: number): Promise<AsyncDisposable> {
  const table = `anyport_test_${port}`;
  const run = async (script: string) => {
    const child = new Deno.Command("nft", {
      args: ["-f", "-"],
      stdin: "piped",
      stderr: "piped",
    })
      .spawn();
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(script));
    await writer.close();
    const { success, stderr } = await child.output();
    if (!success) {
      throw new Error(`nft failed: ${new TextDecoder().decode(stderr)}`);
    }
  };
  await run(
    `table inet ${table} {\n chain out {\n type filter hook output priority 0;\n tcp dport ${port} tcp flags syn drop\n }\n}\n`,
  );
  return { [Symbol.asyncDispose]: () => run(`delete table inet ${table}`) };
}

Deno.test("proxy holds a client back while the target does not read", async () => {
  let release!: () => void;
  const released = new Promise<void>((resolve) => release = resolve);
  let received = 0;
  await using target = new TestServer(async (conn) => {
    await released;
    received = await drain(conn);
  });
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const size = 64 * 1024 * 1024;
  const conn = await connect(port!);
  let written = 0;
  const writer = (async () => {
    const chunk = new Uint8Array(1024 * 1024);
    while (written < size) {
      written += await conn.write(chunk.subarray(0, size - written));
    }
    await conn.closeWrite();
  })();
  await delay(500);
  // Kernel buffers on both connections hold a few MiB; the proxy must not
  // take the rest into memory while the target reads nothing.
  assert.ok(written < size / 2, `${written} bytes went in unread`);
  release();
  await writer;
  await waitFor(() => received === size, 10_000, "the target to get all bytes");
  closeQuietly(conn);
});

Deno.test("proxy keeps a reader slower than its socket buffer", async () => {
  // The proxy's sends stall for longer than the idle timeout while the
  // client drains the kernel's buffers; that still counts as activity.
  const size = 4 * 1024 * 1024;
  await using target = new TestServer(async (conn) => {
    await writeAll(conn, new Uint8Array(size));
    await conn.closeWrite();
    await drain(conn);
  });
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    IdleTimeoutMs: 300,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const conn = await connect(port!);
  const buffer = new Uint8Array(16 * 1024);
  let received = 0;
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    received += n;
    await delay(10);
  }
  closeQuietly(conn);
  assert.equal(received, size);
});

Deno.test("proxy resets a stuck reader at the idle timeout", async () => {
  await using target = new TestServer(async (conn) => {
    await writeAll(conn, new Uint8Array(16 * 1024 * 1024));
  });
  const [port] = freePorts(1);
  await using _proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    IdleTimeoutMs: 200,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const conn = await connect(port!);
  // Reads nothing for several idle periods, so bytes stay queued.
  await delay(1_000);
  let clientError: unknown;
  try {
    await drain(conn);
  } catch (error) {
    clientError = error;
  }
  closeQuietly(conn);
  assert.ok(
    clientError instanceof Deno.errors.ConnectionReset,
    `client saw ${clientError}; want ConnectionReset, not a clean end`,
  );
});

Deno.test("proxy resets a stuck reader within one idle timeout", async () => {
  await using target = new TestServer(async (conn) => {
    await writeAll(conn, new Uint8Array(16 * 1024 * 1024));
  });
  const [port] = freePorts(1);
  await using proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    IdleTimeoutMs: 1_000,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  // Timed from before the connect, so the time also covers the first few
  // hundred milliseconds, in which the queues still fill.
  const started = Date.now();
  const conn = await connect(port!);
  await waitFor(
    () => proxy.proxy.connections === 1,
    2_000,
    "the proxy to accept",
  );
  await waitFor(
    () => proxy.proxy.connections === 0,
    5_000,
    "the proxy to close the connection",
  );
  const elapsed = Date.now() - started;
  closeQuietly(conn);
  // Measured 1,272 ms, with an idle check every 250 ms. The code that took
  // a second full timeout after its first look at the queues took 2,265 ms.
  assert.ok(elapsed >= 1_000, `closed after ${elapsed} ms`);
  assert.ok(elapsed < 1_750, `closed after ${elapsed} ms`);
});

/**
 * Connects a `node:net` client, which can send a reset with
 * `resetAndDestroy()`, to `port` and waits until the proxy accepted it.
 */
async function connectAccepted(
  port: number,
  proxy: TestProxy,
): Promise<net.Socket> {
  const client = net.connect(port, "127.0.0.1");
  await new Promise((resolve) => client.once("connect", resolve));
  await waitFor(
    () => proxy.proxy.connections === 1,
    2_000,
    "the proxy to accept",
  );
  return client;
}

Deno.test({
  name: "proxy cancels a pending connect when the client resets",
  ignore: !isRoot() || !hasNft(),
  async fn() {
    const [port, blackholed] = freePorts(2);
    await using _rule = await dropSyns(blackholed!);
    await using proxy = await TestProxy.start({
      ...FAST_SETTINGS,
      ConnectTimeoutMs: 10_000,
      Apps: [{
        Name: "a",
        Ports: [port],
        Targets: [`127.0.0.1:${blackholed}`],
      }],
    });
    const client = await connectAccepted(port!, proxy);
    client.resetAndDestroy();
    // Without the cancel the session waits out the 10 s connect timeout.
    await waitFor(
      () => proxy.proxy.connections === 0,
      2_000,
      "the session to end",
    );
  },
});

Deno.test({
  name: "proxy delivers bytes a client sent before resetting during connect",
  ignore: !isRoot() || !hasNft(),
  async fn() {
    let end: ReadEnd | undefined;
    await using target = new TestServer(async (conn) => {
      end = await readToEnd(conn);
    });
    const [port] = freePorts(1);
    const targetPort = Number(target.target.split(":")[1]);
    await using proxy = await TestProxy.start({
      ...FAST_SETTINGS,
      ConnectTimeoutMs: 10_000,
      Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
    });
    {
      // The first SYN is dropped, so the connect waits for the retry (1 s).
      await using _rule = await dropSyns(targetPort);
      const client = await connectAccepted(port!, proxy);
      await new Promise((resolve) =>
        client.write(new Uint8Array(1000), resolve)
      );
      await delay(50);
      client.resetAndDestroy();
      await delay(100);
    }
    // A slow rule removal can drop the retry at 1 s too. The next retries
    // come at 3 and 7 s, inside the 10 s connect timeout.
    await waitFor(
      () => end !== undefined,
      9_000,
      "the target connection to end",
    );
    assert.equal(end!.received, 1000);
    assert.ok(
      end!.error instanceof Deno.errors.ConnectionReset,
      `target saw ${end!.error}; want ConnectionReset`,
    );
  },
});

Deno.test({
  name: "proxy start names every busy port",
  async fn() {
    await using target = echoServer();
    const [free, ...held] = freePorts(3);
    using _first = Deno.listen({ hostname: "127.0.0.1", port: held[0]! });
    using _second = Deno.listen({ hostname: "127.0.0.1", port: held[1]! });
    const [low, high] = held.sort((a, b) => a - b);

    await assert.rejects(
      TestProxy.start({
        ...FAST_SETTINGS,
        Apps: [{
          Name: "a",
          Ports: [free, low, high],
          Targets: [target.target],
        }],
      }),
      new RegExp(
        `Address already in use.*other sockets listen on 2 configured ports \\(${low}, ${high}\\)`,
      ),
    );
  },
});

Deno.test({
  name: "proxy start names a port in use as a local port of a connection",
  // It narrows the ephemeral port range of the test's network namespace.
  ignore: !inTestNamespace(),
  async fn() {
    await using target = echoServer();
    const [port] = freePorts(1);
    const rangeFile = "/proc/sys/net/ipv4/ip_local_port_range";
    const original = Deno.readTextFileSync(rangeFile);
    Deno.writeTextFileSync(rangeFile, `${port} ${port}`);
    let client: Deno.TcpConn;
    try {
      // The kernel gives the client the only port of the range.
      client = await connect(target.port);
    } finally {
      Deno.writeTextFileSync(rangeFile, original);
    }
    try {
      await assert.rejects(
        TestProxy.start({
          ...FAST_SETTINGS,
          Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
        }),
        /Address already in use.*no socket listens on it.*ip_local_reserved_ports/,
      );
    } finally {
      closeQuietly(client);
    }
  },
});

Deno.test("proxy reload names every setting that needs a restart", async () => {
  await using target = echoServer();
  const [port] = freePorts(1, "::1");
  const app = { Name: "a", Ports: [port], Targets: [target.target] };
  await using proxy = await TestProxy.start({
    ...FAST_SETTINGS,
    ListenAddress: "::1",
    Apps: [app],
  });
  await assert.rejects(
    proxy.reload({
      ...FAST_SETTINGS,
      Mode: "bpf",
      ListenAddress: "::2",
      Apps: [app],
    }),
    /Cannot change Mode \(listeners -> bpf\) or ListenAddress \(::1 -> ::2\) on reload, so no change in the file was applied/,
  );
  // Another spelling of the same address needs no restart.
  await proxy.reload({
    ...FAST_SETTINGS,
    ListenAddress: "0:0:0:0:0:0:0:1",
    Apps: [app],
  });
});

/** Reads exactly `length` bytes from `conn` and decodes them. */
async function readText(conn: Deno.Conn, length: number): Promise<string> {
  const buffer = new Uint8Array(length);
  let filled = 0;
  while (filled < length) {
    const n = await conn.read(buffer.subarray(filled));
    if (n === null) break;
    filled += n;
  }
  return new TextDecoder().decode(buffer.subarray(0, filled));
}
