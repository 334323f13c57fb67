import net from "node:net";
import assert from "node:assert/strict";
import {
  accepts,
  assertReplyThenReset,
  closeQuietly,
  connect,
  delay,
  drain,
  echoServer,
  FAST_SETTINGS,
  freePorts,
  inTestNamespace,
  ProxyProcess,
  readToEnd,
  ROOT,
  roundTrip,
  TestServer,
  waitFor,
  writeAll,
  writeConfigFile,
} from "./helpers.ts";

Deno.test("anyport keeps memory bounded for a client that never reads", async () => {
  // The target writes as fast as it can; the client reads nothing.
  let written = 0;
  await using target = new TestServer(async (conn) => {
    const chunk = new Uint8Array(256 * 1024);
    for (;;) {
      written += await conn.write(chunk);
    }
  });
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  await using proxy = new ProxyProcess(path, ["--log-level", "warning"]);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  const before = await proxy.rss();
  const conn = await connect(port!);
  await delay(1_500);
  const stalledAt = written;
  await delay(500);
  const after = await proxy.rss();
  closeQuietly(conn);
  assert.ok(
    stalledAt < 64 * 1024 * 1024,
    `target wrote ${stalledAt} bytes; backpressure missing`,
  );
  assert.equal(
    written,
    stalledAt,
    "target kept writing after the buffers filled",
  );
  const growth = after - before;
  assert.ok(growth < 16 * 1024 * 1024, `proxy RSS grew by ${growth} bytes`);
});

Deno.test("anyport returns to its descriptor count after 500 connections", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  await using proxy = new ProxyProcess(path, ["--log-level", "warning"]);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  await delay(200);
  const baseline = await proxy.fdCount();
  // Clean closes, half-closes and resets, 50 at a time.
  for (let round = 0; round < 10; round++) {
    await Promise.all(Array.from({ length: 50 }, async (_, i) => {
      const conn = await connect(port!);
      await writeAll(conn, new TextEncoder().encode("ping"));
      if (i % 3 === 0) {
        closeQuietly(conn);
        return;
      }
      if (i % 3 === 1) await conn.closeWrite();
      const buffer = new Uint8Array(16);
      await conn.read(buffer).catch(() => null);
      closeQuietly(conn);
    }));
  }
  await waitFor(
    async () => (await proxy.fdCount()) <= baseline,
    5_000,
    `descriptor count back to ${baseline}`,
  ).catch(async (error) => {
    throw new Error(`${error.message}; now ${await proxy.fdCount()}`);
  });
  const closeWait = await countCloseWait(proxy.child.pid);
  assert.equal(closeWait, 0, `${closeWait} sockets of the proxy in CLOSE_WAIT`);
});

Deno.test("anyport stops accepting at the default connection limit", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  // (128 descriptors - 64 reserved - 1 listener) / 2 per connection
  await using proxy = new ProxyProcess(path, ["--no-access-log"], 128);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  const openConns: Deno.TcpConn[] = [];
  for (let i = 0; i < 150; i++) openConns.push(await connect(port!));
  await proxy.waitForLog(/Connection limit reached: 31 connections open/);
  await delay(200);
  for (const conn of openConns) closeQuietly(conn);
  assert.doesNotMatch(proxy.stderr, /Accept failed|out of resources/);
  await waitFor(
    async () => (await roundTrip(port!, "alive").catch(() => "")) === "alive",
    5_000,
    "proxy to serve again",
  );
  await proxy.waitForLog(
    /Accepting again: \d+ connections? open, \d+ ms after the connection limit was reached/,
  );
});

Deno.test("anyport logs a named target's address", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [`localhost:${target.port}`] }],
  });
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");

  assert.equal(await roundTrip(port!, "named"), "named");

  await proxy.waitForLog(
    new RegExp(
      `-> a:${port} via localhost:${target.port} \\(127\\.0\\.0\\.1\\): closed`,
    ),
  );
});

Deno.test("anyport writes access lines as JSON", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  await using proxy = new ProxyProcess(path, ["--log-format", "json"]);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");

  assert.equal(await roundTrip(port!, "json"), "json");

  // The probe that waited for the proxy has an access line of its own.
  await proxy.waitForLog(/"logger":"anyport\.access".*"sent":4/);
  const line = proxy.stderr.split("\n").find((text) =>
    text.includes('"logger":"anyport.access"') && text.includes('"sent":4')
  );
  assert.ok(line !== undefined, proxy.stderr);
  const parsed = JSON.parse(line);
  assert.equal(parsed.level, "INFO");
  assert.match(parsed.message, new RegExp(`-> a:${port} via .*: closed, 4 B`));
  assert.equal(parsed.properties.app, "a");
  assert.equal(parsed.properties.port, port);
  assert.equal(parsed.properties.received, 4);
});

Deno.test("anyport logs no resumed accepts while it stops", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    MaxConnections: 1,
    DrainTimeoutMs: 300,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  const open = await connect(port!);
  // Waits in the listen backlog behind the limit.
  const waiting = await connect(port!);
  try {
    await proxy.waitForLog(/Connection limit reached/);

    assert.equal(await proxy.stop("SIGTERM"), 0);

    const stopping = proxy.stderr.slice(proxy.stderr.indexOf("Stopping:"));
    assert.match(stopping, /Stopped; connections closed at the end/);
    assert.doesNotMatch(stopping, /Accepting again/);
  } finally {
    closeQuietly(open);
    closeQuietly(waiting);
  }
});

Deno.test("anyport survives running out of descriptors", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    // A limit above what the descriptors allow, so accept(2) runs out.
    MaxConnections: 1_000,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  await using proxy = new ProxyProcess(path, ["--log-level", "warning"], 128);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  const openConns: Deno.TcpConn[] = [];
  for (let i = 0; i < 150; i++) openConns.push(await connect(port!));
  // Either accept(2) or the target's socket(2) runs out first.
  await proxy.waitForLog(/Accept failed on port \d+|out of resources/);
  for (const conn of openConns) closeQuietly(conn);
  assert.doesNotMatch(proxy.stderr, /marked down/, "target blamed for EMFILE");
  await waitFor(
    async () => (await roundTrip(port!, "alive").catch(() => "")) === "alive",
    5_000,
    "proxy to serve again",
  );
});

Deno.test("anyport drains open connections on SIGTERM, then exits 0", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    DrainTimeoutMs: 5_000,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  const session = await connect(port!);
  await writeAll(session, new TextEncoder().encode("one"));
  await session.read(new Uint8Array(3));
  proxy.child.kill("SIGTERM");
  await proxy.waitForLog(/Stopping/);
  await waitFor(
    async () => !(await accepts(port!)),
    2_000,
    "listener to close",
  );
  // The open session still works during the drain.
  await writeAll(session, new TextEncoder().encode("two"));
  const buffer = new Uint8Array(3);
  assert.equal(await session.read(buffer), 3);
  assert.equal(new TextDecoder().decode(buffer), "two");
  closeQuietly(session);
  const { code } = await proxy.child.status;
  assert.equal(code, 0);
  await proxy.waitForLog(
    /Stopped; connections closed at the end of the drain: 0/,
  );
});

/**
 * Starts anyport in front of an echo server, with one client connection
 * open after a round trip on it. Disposing stops the proxy, then the server.
 */
async function proxyWithSession(drainTimeoutMs: number) {
  const target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    DrainTimeoutMs: drainTimeoutMs,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  const proxy = new ProxyProcess(path);
  const dispose = async () => {
    await proxy[Symbol.asyncDispose]();
    await target[Symbol.asyncDispose]();
  };
  try {
    await waitFor(() => accepts(port!), 10_000, "proxy to accept");
    const session = await connect(port!);
    await writeAll(session, new TextEncoder().encode("x"));
    await session.read(new Uint8Array(1));
    return { proxy, session, [Symbol.asyncDispose]: dispose };
  } catch (error) {
    await dispose();
    throw error;
  }
}

Deno.test("anyport closes connections left at the end of the drain", async () => {
  await using setup = await proxyWithSession(300);
  const { proxy, session } = setup;
  const started = Date.now();
  const code = await proxy.stop("SIGTERM");
  assert.equal(code, 0);
  assert.ok(Date.now() - started < 3_000, "drain timeout not applied");
  assert.match(
    proxy.stderr,
    /Stopped; connections closed at the end of the drain: 1/,
  );
  closeQuietly(session);
});

Deno.test("anyport ends the drain early on a second SIGTERM", async () => {
  await using setup = await proxyWithSession(60_000);
  const { proxy, session } = setup;
  proxy.child.kill("SIGTERM");
  await proxy.waitForLog(/Stopping/);
  // A repeat within a second counts as the same request.
  await delay(1_100);
  const code = await proxy.stop("SIGTERM");
  assert.equal(code, 0);
  assert.match(
    proxy.stderr,
    /Stopped; connections closed at the end of the drain: 1/,
  );
  closeQuietly(session);
});

Deno.test("anyport keeps draining after a signal sent twice at once", async () => {
  await using setup = await proxyWithSession(60_000);
  const { proxy, session } = setup;
  // As from Ctrl-C under `deno task`: the process and its wrapper both
  // receive the signal, and the wrapper passes its copy on.
  proxy.child.kill("SIGINT");
  await proxy.waitForLog(/Stopping/);
  proxy.child.kill("SIGINT");
  await proxy.waitForLog(/Stop signal repeated/);
  await writeAll(session, new TextEncoder().encode("y"));
  const echoed = new Uint8Array(1);
  assert.equal(await session.read(echoed), 1, "the drained connection died");
  assert.equal(new TextDecoder().decode(echoed), "y");
  closeQuietly(session);
  const code = await proxy.child.status;
  assert.equal(code.code, 0);
  await proxy.waitForLog(
    /Stopped; connections closed at the end of the drain: 0/,
  );
});

Deno.test("anyport ignores SIGHUP while it drains", async () => {
  await using setup = await proxyWithSession(5_000);
  const { proxy, session } = setup;
  proxy.child.kill("SIGTERM");
  await proxy.waitForLog(/Stopping/);
  proxy.child.kill("SIGHUP");
  await proxy.waitForLog(/Reload ignored/);
  await writeAll(session, new TextEncoder().encode("y"));
  assert.equal(await session.read(new Uint8Array(1)), 1);
  closeQuietly(session);
  const { code } = await proxy.child.status;
  assert.equal(code, 0);
});

Deno.test("anyport reloads when a symlinked config is swapped, then edited", async () => {
  // The layout Kubernetes uses for a mounted ConfigMap.
  await using echo = echoServer();
  const [kept, added, edited] = freePorts(3);
  const dir = await Deno.makeTempDir({ prefix: "anyport-configmap-" });
  const version = async (name: string, ports: number[]) => {
    await Deno.mkdir(`${dir}/${name}`);
    await Deno.writeTextFile(
      `${dir}/${name}/config.json`,
      JSON.stringify({
        ...FAST_SETTINGS,
        Apps: [{ Name: "a", Ports: ports, Targets: [echo.target] }],
      }),
    );
  };
  await version("..v1", [kept!]);
  await Deno.symlink("..v1", `${dir}/..data`);
  await Deno.symlink("..data/config.json", `${dir}/config.json`);
  await using proxy = new ProxyProcess(`${dir}/config.json`);
  await proxy.waitForLog(/Started/);

  await version("..v2", [kept!, added!]);
  await Deno.symlink("..v2", `${dir}/..data_tmp`);
  await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
  await waitFor(() => accepts(added!), 5_000, "added port to accept");
  assert.equal(await roundTrip(added!, "v2"), "v2");

  // The new target is in a directory that was not watched at start.
  await Deno.writeTextFile(
    `${dir}/..v2/config.json`,
    JSON.stringify({
      ...FAST_SETTINGS,
      Apps: [{
        Name: "a",
        Ports: [kept, added, edited],
        Targets: [echo.target],
      }],
    }),
  );
  await waitFor(() => accepts(edited!), 5_000, "edited port to accept");
});

Deno.test("anyport watches a replaced config directory", async () => {
  await using echo = echoServer();
  const [kept, added, later] = freePorts(3);
  const parent = await Deno.makeTempDir({ prefix: "anyport-test-" });
  const config = (ports: number[]) =>
    JSON.stringify({
      ...FAST_SETTINGS,
      Apps: [{ Name: "a", Ports: ports, Targets: [echo.target] }],
    });
  await Deno.mkdir(`${parent}/conf`);
  await Deno.writeTextFile(`${parent}/conf/config.json`, config([kept!]));
  await using proxy = new ProxyProcess(`${parent}/conf/config.json`);
  await proxy.waitForLog(/Started/);

  // As a deploy tool that replaces the whole directory does.
  await Deno.rename(`${parent}/conf`, `${parent}/conf.old`);
  await Deno.mkdir(`${parent}/conf`);
  await Deno.writeTextFile(
    `${parent}/conf/config.json`,
    config([kept!, added!]),
  );
  await waitFor(() => accepts(added!), 5_000, "added port to accept");

  // Later edits in the new directory are seen too.
  await Deno.writeTextFile(
    `${parent}/conf/config.json`,
    config([kept!, added!, later!]),
  );
  await waitFor(() => accepts(later!), 5_000, "later port to accept");
});

Deno.test("anyport reloads a changed config file and keeps sessions", async () => {
  await using echo = echoServer();
  const [kept, added] = freePorts(2);
  const config = {
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [kept], Targets: [echo.target] }],
  };
  const path = await writeConfigFile(config);
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(kept!), 10_000, "proxy to accept");
  const session = await connect(kept!);
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      ...config,
      Apps: [{ Name: "a", Ports: [kept, added], Targets: [echo.target] }],
    }),
  );
  await waitFor(() => accepts(added!), 5_000, "added port to accept");
  // The port accepts a moment before the reload's line is written.
  await proxy.waitForLog(/Reloaded .*ports added/);
  assert.equal(await roundTrip(added!, "new"), "new");
  await writeAll(session, new TextEncoder().encode("old"));
  const buffer = new Uint8Array(3);
  assert.equal(await session.read(buffer), 3);
  closeQuietly(session);
});

Deno.test("anyport applies a rejected config again when the file is saved", async () => {
  await using echo = echoServer();
  const [kept, taken] = freePorts(2);
  const config = {
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [kept], Targets: [echo.target] }],
  };
  const path = await writeConfigFile(config);
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(kept!), 10_000, "proxy to accept");
  const other = Deno.listen({ hostname: "127.0.0.1", port: taken! });
  const text = JSON.stringify({
    ...config,
    Apps: [{ Name: "a", Ports: [kept, taken], Targets: [echo.target] }],
  });
  await Deno.writeTextFile(path, text);
  await proxy.waitForLog(/Reload rejected.*Cannot listen/);

  // Saved again unchanged once the port is free, the file applies.
  other.close();
  await Deno.writeTextFile(path, text);
  await proxy.waitForLog(/Reloaded .*ports added/);
  assert.equal(await roundTrip(taken!, "now"), "now");
});

Deno.test("anyport rejects ports beyond the file limit", async () => {
  await using echo = echoServer();
  const [kept] = freePorts(1);
  const config = {
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [kept], Targets: [echo.target] }],
  };
  const path = await writeConfigFile(config);
  await using proxy = new ProxyProcess(path, [], 128);
  await waitFor(() => accepts(kept!), 10_000, "proxy to accept");
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      ...config,
      Apps: [{
        Name: "a",
        Ports: [kept, "47100-47299"],
        Targets: [echo.target],
      }],
    }),
  );

  await proxy.waitForLog(
    /Reload rejected.*Cannot listen on 201 ports: each needs a descriptor, and the open-file limit is 128/,
  );
  await delay(1_500);
  assert.doesNotMatch(proxy.stderr, /tried again/);
  assert.equal(await roundTrip(kept!, "still"), "still");
});

Deno.test("anyport logs connections reset at an app's MaxConnections", async () => {
  await using echo = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{
      Name: "a",
      Ports: [port],
      Targets: [echo.target],
      MaxConnections: 1,
    }],
  });
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  // The readiness probe has ended, so one client now takes the only slot.
  await delay(100);
  const occupant = await connect(port!);
  try {
    await writeAll(occupant, new TextEncoder().encode("x"));
    assert.equal(await occupant.read(new Uint8Array(1)), 1);
    await roundTrip(port!, "y").catch(() => "");

    await proxy.waitForLog(
      /App a is at its MaxConnections of 1 \(1 connection open\)/,
    );
    await proxy.waitForLog(
      /-> a:\d+ via -: reset at the app's MaxConnections, 0 B sent/,
    );
  } finally {
    closeQuietly(occupant);
  }
});

Deno.test("anyport logs that a rejected file was restored", async () => {
  await using echo = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [echo.target] }],
  });
  const text = await Deno.readTextFile(path);
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  await Deno.writeTextFile(path, "{");
  await proxy.waitForLog(/Reload rejected/);

  await Deno.writeTextFile(path, text);
  await proxy.waitForLog(/Reloaded .*: no changes/);
});

Deno.test("anyport waits for a file written in two parts before judging it", async () => {
  await using echo = echoServer();
  const [port, added] = freePorts(2);
  const config = {
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [echo.target] }],
  };
  const path = await writeConfigFile(config);
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  const text = JSON.stringify({
    ...config,
    Apps: [{ Name: "a", Ports: [port, added], Targets: [echo.target] }],
  });
  // The first half stays alone longer than the watcher's 200 ms debounce.
  await Deno.writeTextFile(path, text.slice(0, 30));
  await delay(500);
  await Deno.writeTextFile(path, text);

  await proxy.waitForLog(/Reloaded .*ports added/);
  assert.doesNotMatch(proxy.stderr, /Reload rejected/);
});

Deno.test("anyport names the first 16 changes of a reload", async () => {
  await using echo = echoServer();
  const ports = freePorts(20);
  const apps = ports.map((port, i) => ({
    Name: `app${i}`,
    Ports: [port],
    Targets: [echo.target],
  }));
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: apps.slice(0, 1),
  });
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(ports[0]!), 10_000, "proxy to accept");
  await Deno.writeTextFile(
    path,
    JSON.stringify({ ...FAST_SETTINGS, Apps: apps }),
  );

  // 19 apps added, then the connection limit, which 19 more ports lower.
  await proxy.waitForLog(
    /Reloaded .*app "app16" added[^;]*; and 4 more changes/,
  );
  assert.doesNotMatch(proxy.stderr, /app "app17"/);
});

Deno.test("anyport logs the first 50 problems of a config", async () => {
  await using echo = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [echo.target] }],
  });
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  const apps = Array.from({ length: 60 }, (_, i) => ({
    Name: `app${i}`,
    Ports: ["none"],
    Targets: [echo.target],
  }));
  await Deno.writeTextFile(path, JSON.stringify({ Apps: apps }));
  proxy.child.kill("SIGHUP");

  await proxy.waitForLog(/10 problems not listed: run anyport check /);
  assert.equal(proxy.stderr.match(/Apps\[\d+\]\.Ports\[0\]/g)?.length, 50);
});

Deno.test("anyport keeps the running config after an invalid reload", async () => {
  await using echo = echoServer();
  const [port] = freePorts(1);
  const config = {
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [echo.target] }],
  };
  const path = await writeConfigFile(config);
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      Apps: [{ Name: "a", Prots: [port], Targets: ["nohost"] }],
    }),
  );
  proxy.child.kill("SIGHUP");
  await proxy.waitForLog(/Reload rejected/);
  assert.match(
    proxy.stderr,
    /Apps\[0\]\.Prots: unknown key: did you mean "Ports"\?/,
  );
  assert.match(
    proxy.stderr,
    /Apps\[0\]\.Targets\[0\]: "nohost" is not a target/,
  );
  assert.equal(await roundTrip(port!, "still here"), "still here");
});

Deno.test("anyport starts with a target that never resolves", async () => {
  await using echo = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{
      Name: "a",
      Ports: [port],
      Targets: ["bad.target.invalid:6003", echo.target],
    }],
  });
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  for (let i = 0; i < 5; i++) {
    assert.equal(await roundTrip(port!, `n${i}`), `n${i}`);
  }
  await proxy.waitForLog(/bad\.target\.invalid:6003 of app a marked down/);
});

Deno.test("anyport check reports every problem and exits 1", async () => {
  const path = await writeConfigFile({
    Apps: [
      { Name: "a", Ports: [70000, 5], Targets: ["::1:9001"] },
      { Name: "a", Ports: [5], Targets: [] },
    ],
  });
  const { code, stderr } = await runCli(["check", "--config", path]);
  const text = new TextDecoder().decode(stderr);
  assert.equal(code, 1);
  assert.match(text, /Apps\[0\]\.Ports\[0\]: 70000 is not a port \(1-65535\)/);
  assert.match(text, /Apps\[0\]\.Targets\[0\]: "::1:9001" is not a target/);
  assert.match(text, /Apps\[1\]\.Name: "a" is already the name of Apps\[0\]/);
  assert.match(text, /Apps\[1\]\.Ports\[0\]: port 5 is already used/);
  assert.match(text, /Apps\[1\]\.Targets: is empty: list at least one entry/);
});

Deno.test("anyport check accepts the shipped configs", async () => {
  for (const file of ["config.json", "config.online.json"]) {
    const { code, stdout } = await runCli([
      "check",
      "--config",
      `${ROOT}${file}`,
    ]);
    assert.equal(code, 0, file);
    assert.match(new TextDecoder().decode(stdout), /valid, 3 apps, 1200 ports/);
  }
});

Deno.test("anyport check takes the path as an argument", async () => {
  const { code, stdout } = await runCli(["check", `${ROOT}config.json`]);
  assert.equal(code, 0);
  assert.match(new TextDecoder().decode(stdout), /valid, 3 apps/);
});

Deno.test("anyport check reports the mode from --mode", async () => {
  const { code, stdout } = await runCli([
    "check",
    `${ROOT}config.json`,
    "--mode",
    "bpf",
  ]);
  assert.equal(code, 0);
  assert.match(new TextDecoder().decode(stdout), /, mode bpf$/m);
});

Deno.test("anyport check validates with the mode from --mode", async () => {
  // Per-port listeners on an address that is not loopback do not serve
  // 127.0.0.1:7001, but BPF mode steers it, so the target would loop.
  const path = await writeConfigFile({
    ListenAddress: "192.0.2.1",
    Apps: [{ Name: "a", Ports: [7001], Targets: ["127.0.0.1:7001"] }],
  });
  const listeners = await runCli(["check", path]);
  assert.equal(listeners.code, 0);

  const bpf = await runCli(["check", path, "--mode", "bpf"]);
  assert.equal(bpf.code, 1);
  assert.match(
    new TextDecoder().decode(bpf.stderr),
    /Apps\[0\]\.Targets\[0\]: "127\.0\.0\.1:7001" is port 7001 of this proxy/,
  );
});

Deno.test("anyport check rejects two config paths", async () => {
  const { code, stderr } = await runCli([
    "check",
    "--config",
    `${ROOT}config.json`,
    `${ROOT}config.online.json`,
  ]);
  assert.equal(code, 2);
  assert.match(
    new TextDecoder().decode(stderr),
    /^Two config files given, .*: pass only one\n/,
  );
});

Deno.test("anyport check names the second of two paths", async () => {
  const { code, stderr } = await runCli([
    "check",
    `${ROOT}config.json`,
    `${ROOT}config.online.json`,
  ]);
  assert.equal(code, 2);
  assert.match(
    new TextDecoder().decode(stderr),
    /^Unexpected argument ".*config\.online\.json"/,
  );
});

Deno.test("anyport rejects an unknown option with usage help", async () => {
  const { code, stderr } = await runCli(["--bogus"]);
  const text = new TextDecoder().decode(stderr);
  assert.equal(code, 2);
  assert.match(text, /^Unknown option "--bogus"\n/);
  assert.match(text, /anyport --help/);
});

Deno.test("anyport names an unknown command", async () => {
  const { code, stderr } = await runCli(["frobnicate", "x"]);
  assert.equal(code, 2);
  assert.match(
    new TextDecoder().decode(stderr),
    /^Unknown command "frobnicate": use check, bpf or no command\n/,
  );
});

Deno.test("anyport rejects an empty config path", async () => {
  for (const args of [["-c", ""], ["check", ""]]) {
    const { code, stderr } = await runCli(args);
    assert.equal(code, 2, args.join(" "));
    assert.match(
      new TextDecoder().decode(stderr),
      /^The config path is empty: give the config file's path\n/,
    );
  }
});

function runCli(args: string[]): Promise<Deno.CommandOutput> {
  return new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", `${ROOT}main.ts`, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
}

/** Counts TCP sockets in CLOSE_WAIT that belong to process `pid`. */
async function countCloseWait(pid: number): Promise<number> {
  const inodes = new Set<string>();
  for await (const entry of Deno.readDir(`/proc/${pid}/fd`)) {
    try {
      const link = await Deno.readLink(`/proc/${pid}/fd/${entry.name}`);
      const match = /^socket:\[(\d+)\]$/.exec(link);
      if (match) inodes.add(match[1]!);
    } catch {
      // Closed while listing.
    }
  }
  let count = 0;
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    const lines = (await Deno.readTextFile(file)).split("\n").slice(1);
    for (const line of lines) {
      const fields = line.trim().split(/\s+/);
      // Field 3 is the state (08 is CLOSE_WAIT); field 9 is the inode.
      if (fields[3] === "08" && inodes.has(fields[9] ?? "")) count++;
    }
  }
  return count;
}

Deno.test("anyport names the missing --allow-ffi and exits 1", async () => {
  const { code, stderr } = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-net",
      `${ROOT}main.ts`,
      "--config",
      `${ROOT}config.json`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(code, 1);
  assert.match(new TextDecoder().decode(stderr), /run it with --allow-ffi/);
});

Deno.test("anyport reloads while a file next to the config keeps changing", async () => {
  await using echo = echoServer();
  const [kept, added] = freePorts(2);
  const config = {
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [kept], Targets: [echo.target] }],
  };
  const path = await writeConfigFile(config);
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(kept!), 10_000, "proxy to accept");

  // A log file in the same directory, written more often than the reload's
  // 200 ms debounce, must not put the reload off.
  const neighbour = `${path}.log`;
  let writing = true;
  const writer = (async () => {
    for (let i = 0; writing && i < 200; i++) {
      await Deno.writeTextFile(neighbour, `line ${i}\n`, { append: true });
      await delay(50);
    }
  })();
  await Deno.writeTextFile(
    path,
    JSON.stringify({
      ...config,
      Apps: [{ Name: "a", Ports: [kept, added], Targets: [echo.target] }],
    }),
  );
  try {
    await waitFor(() => accepts(added!), 3_000, "added port to accept");
  } finally {
    writing = false;
    await writer;
  }
  assert.match(proxy.stderr, /Reloaded .*ports added/);
});

Deno.test("anyport serves with a stalled log reader", async () => {
  await using target = echoServer();
  const [port] = freePorts(1);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    Apps: [{ Name: "a", Ports: [port], Targets: [target.target] }],
  });
  // The default level logs a line per connection.
  await using proxy = new ProxyProcess(path);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  const resume = proxy.pauseStderr();
  // 2,000 access lines are several times the capacity of a pipe (64 KiB).
  const connections = 2_000;
  let served = 0;
  const serving = (async () => {
    for (let round = 0; round < connections / 100; round++) {
      const replies = await Promise.all(
        Array.from({ length: 100 }, () => roundTrip(port!, "ping")),
      );
      served += replies.filter((reply) => reply === "ping").length;
    }
  })();
  // On failure the proxy is killed while connections are pending.
  serving.catch(() => {});
  await waitFor(
    () => served === connections,
    30_000,
    `all connections served while the log pipe was full (${served} so far)`,
  );
  await serving;
  resume();
  // Every line comes out once the pipe is read again: none was dropped.
  await waitFor(
    () => (proxy.stderr.match(/anyport\.access/g) ?? []).length >= connections,
    10_000,
    "the queued access lines",
  );
  assert.doesNotMatch(proxy.stderr, /Dropped \d+ log lines/);
});

Deno.test("anyport delivers a reply sent during an upload before a target reset", async () => {
  // Like an HTTP 413: the target reads part of the upload, replies, stops
  // reading and closes with unread bytes, which makes its kernel send a reset.
  const reply = "r".repeat(60_000);
  const target = net.createServer((socket) => {
    let read = 0;
    socket.on("data", (chunk) => {
      read += chunk.length;
      if (read < 65536 || socket.isPaused()) return;
      socket.pause();
      // The wait lets more of the upload arrive unread, so that closing
      // sends a reset even when the proxy forwards slowly, as under load.
      socket.write(reply, () => setTimeout(() => socket.destroy(), 50));
    });
  });
  await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
  const targetPort = (target.address() as net.AddressInfo).port;
  const [port] = freePorts(1);
  try {
    const path = await writeConfigFile({
      ...FAST_SETTINGS,
      Apps: [{
        Name: "a",
        Ports: [port],
        Targets: [`127.0.0.1:${targetPort}`],
      }],
    });
    // A process of its own, so the proxy runs while the test's target and
    // client wait for their sockets.
    await using _proxy = new ProxyProcess(path, ["--log-level", "warning"]);
    await waitFor(() => accepts(port!), 10_000, "proxy to accept");
    for (let i = 0; i < 10; i++) {
      const conn = await connect(port!);
      // Small writes keep the proxy busy with the upload when the reset comes.
      const upload = (async () => {
        const chunk = new Uint8Array(16 * 1024);
        for (let sent = 0; sent < 3_000_000; sent += chunk.length) {
          await writeAll(conn, chunk);
        }
      })().catch(() => {});
      const end = await readToEnd(conn);
      await upload;
      closeQuietly(conn);
      assertReplyThenReset(end, reply.length, `connection ${i}`);
    }
  } finally {
    await new Promise((resolve) => target.close(resolve));
  }
});

async function ip(...args: string[]): Promise<void> {
  const { success, stderr } = await new Deno.Command("ip", {
    args,
    stderr: "piped",
  }).output();
  if (!success) {
    throw new Error(
      `ip ${args.join(" ")}: ${new TextDecoder().decode(stderr)}`,
    );
  }
}

/**
 * Adds `address` to the loopback interface, and removes it again when the
 * result is disposed.
 */
async function loopbackAddress(address: string): Promise<AsyncDisposable> {
  await ip("addr", "add", `${address}/32`, "dev", "lo");
  return {
    [Symbol.asyncDispose]: () =>
      ip("addr", "del", `${address}/32`, "dev", "lo"),
  };
}

Deno.test({
  name: "anyport resets a target that leads back to itself",
  // Adds an address to the loopback interface, so only in a namespace of the
  // test run's own.
  ignore: !inTestNamespace(),
  async fn() {
    // A local address that is not loopback, which the config check passes.
    const local = "10.200.0.1";
    await using _address = await loopbackAddress(local);
    const [port] = freePorts(1, "0.0.0.0");
    const path = await writeConfigFile({
      ...FAST_SETTINGS,
      ListenAddress: "0.0.0.0",
      Apps: [{ Name: "self", Ports: [port], Targets: [`${local}:${port}`] }],
    });
    await using proxy = new ProxyProcess(path, ["--log-level", "warning"]);
    await waitFor(() => accepts(port!), 10_000, "proxy to accept");
    await delay(200);
    const baseline = await proxy.fdCount();
    // Each client ends at once, with a FIN when the reset came back before
    // the connect finished ("no target") and with a reset after it.
    for (let i = 0; i < 3; i++) {
      const conn = await connect(port!);
      let ended = false;
      drain(conn).catch(() => 0).finally(() => ended = true);
      await waitFor(() => ended, 5_000, `client ${i} to be closed`);
      closeQuietly(conn);
    }
    await proxy.waitForLog(/Target 10\.200\.0\.1:\d+ of app self leads back/);
    await waitFor(
      async () => await proxy.fdCount() <= baseline,
      5_000,
      "descriptors back to the baseline",
    );
  },
});

Deno.test({
  name: "anyport fails over from a target that leads back to itself",
  // Adds an address to the loopback interface, so only in a namespace of the
  // test run's own.
  ignore: !inTestNamespace(),
  async fn() {
    const local = "10.200.0.2";
    await using _address = await loopbackAddress(local);
    await using target = echoServer();
    const [port] = freePorts(1, "0.0.0.0");
    const path = await writeConfigFile({
      ...FAST_SETTINGS,
      ListenAddress: "0.0.0.0",
      // A long back-off, so the looping target stays out for the test.
      BackoffMs: 60_000,
      MaxBackoffMs: 60_000,
      Apps: [{
        Name: "self",
        Ports: [port],
        Balance: "round-robin",
        Targets: [`${local}:${port}`, target.target],
      }],
    });
    await using proxy = new ProxyProcess(path, ["--log-level", "info"]);
    await waitFor(() => accepts(port!), 10_000, "proxy to accept");
    for (let i = 0; i < 6; i++) {
      assert.equal(await roundTrip(port!, `hello ${i}`), `hello ${i}`);
    }
    await proxy.waitForLog(/Target 10\.200\.0\.2:\d+ of app self leads back/);
    assert.doesNotMatch(
      proxy.stderr,
      /10\.200\.0\.2:\d+ of app self is back up/,
    );
  },
});

Deno.test({
  name: "anyport serves a chain of two apps and resets a loop of two",
  // Adds an address to the loopback interface, so only in a namespace of the
  // test run's own.
  ignore: !inTestNamespace(),
  async fn() {
    const local = "10.200.0.3";
    await using _address = await loopbackAddress(local);
    await using target = echoServer();
    const [alias, web, loopA, loopB] = freePorts(4, "0.0.0.0");
    const path = await writeConfigFile({
      ...FAST_SETTINGS,
      ListenAddress: "0.0.0.0",
      Apps: [
        // An old port kept as an alias of another app.
        { Name: "alias", Ports: [alias], Targets: [`${local}:${web}`] },
        { Name: "web", Ports: [web], Targets: [target.target] },
        { Name: "a", Ports: [loopA], Targets: [`${local}:${loopB}`] },
        { Name: "b", Ports: [loopB], Targets: [`${local}:${loopA}`] },
      ],
    });
    await using proxy = new ProxyProcess(path, ["--log-level", "info"]);
    await waitFor(() => accepts(alias!), 10_000, "proxy to accept");

    assert.equal(await roundTrip(alias!, "through"), "through");
    assert.doesNotMatch(proxy.stderr, /leads back/);
    assert.equal(await roundTrip(loopA!, "x").catch(() => ""), "");
    await proxy.waitForLog(
      new RegExp(
        `Target ${local}:${loopA} of app b leads back to this proxy along a -> b -> port ${loopA}:`,
      ),
    );
  },
});

Deno.test({
  name: "anyport names the port range when local ports run out",
  // Narrows the ephemeral port range, so only in a namespace of the test
  // run's own.
  ignore: !inTestNamespace(),
  async fn() {
    const rangeFile = "/proc/sys/net/ipv4/ip_local_port_range";
    const original = Deno.readTextFileSync(rangeFile);
    await using target = echoServer();
    const ports = freePorts(2);
    const path = await writeConfigFile({
      ...FAST_SETTINGS,
      Apps: [{ Name: "a", Ports: ports, Targets: [target.target] }],
    });
    const conns: Deno.TcpConn[] = [];
    await using proxy = new ProxyProcess(path, ["--log-level", "warning"]);
    for (const port of ports) {
      await waitFor(() => accepts(port), 10_000, "proxy to accept");
    }
    // One port, after the readiness probes: each client gets it towards its
    // own proxy port, but the proxy has it only once towards the target.
    Deno.writeTextFileSync(rangeFile, "40000 40000");
    try {
      for (const port of ports) conns.push(await connect(port));
      await proxy.waitForLog(
        /no local port towards it is free .*widen net\.ipv4\.ip_local_port_range/,
      );
      assert.doesNotMatch(proxy.stderr, /ulimit -n/);
      assert.doesNotMatch(proxy.stderr, /marked down/);
    } finally {
      for (const conn of conns) closeQuietly(conn);
      Deno.writeTextFileSync(rangeFile, original);
    }
  },
});

Deno.test("anyport logs each failed probe of a down target", async () => {
  // Free a moment ago and never listened on, so connects are refused.
  const [port, refused] = freePorts(2);
  const path = await writeConfigFile({
    ...FAST_SETTINGS,
    BackoffMs: 100,
    MaxBackoffMs: 1_000,
    Apps: [{ Name: "a", Ports: [port], Targets: [`127.0.0.1:${refused}`] }],
  });
  await using proxy = new ProxyProcess(path, ["--no-access-log"]);
  await waitFor(() => accepts(port!), 10_000, "proxy to accept");
  await roundTrip(port!, "x").catch(() => "");
  await proxy.waitForLog(/marked down for 100 ms/);
  // After the back-off, the next client probes the target again.
  await delay(150);
  await roundTrip(port!, "x").catch(() => "");
  await proxy.waitForLog(/still down; back-off now 200 ms/);
});
