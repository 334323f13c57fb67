/**
 * The smallest Deno TCP proxy that does what anyport's data path does
 * (copy loops, half-close, TCP_NODELAY), with no config, routing, balancing
 * or logging. It measures how fast Deno's own socket API can go, so the gap
 * between this and anyport is anyport's cost and the rest is Deno's.
 *
 * Usage: deno run --allow-net --unstable-net bench/deno_floor.ts LISTEN_PORT TARGET_PORT
 * Start it twice to compare one process with two sharing the port
 * (SO_REUSEPORT). Loopback only.
 *
 * @module
 */

async function copy(
  from: Deno.TcpConn,
  to: Deno.TcpConn,
  ended: { count: number },
): Promise<void> {
  const buffer = new Uint8Array(1024);
  try {
    for (;;) {
      const n = await from.read(buffer);
      if (n === null) break;
      let offset = 0;
      while (offset < n) offset += await to.write(buffer.subarray(offset, n));
    }
    if (++ended.count < 2) await to.closeWrite();
  } catch {
    // A reset ends this direction; the other one ends with the close.
  }
}

async function serve(client: Deno.TcpConn, targetPort: number): Promise<void> {
  client.setNoDelay(true);
  const target = await Deno.connect({
    hostname: "127.0.0.1",
    port: targetPort,
  });
  target.setNoDelay(true);
  const ended = { count: 0 };
  await Promise.all([copy(client, target, ended), copy(target, client, ended)]);
  for (const conn of [client, target]) {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

if (import.meta.main) {
  const [listenPort, targetPort] = Deno.args.map(Number);
  const listener = Deno.listen({
    hostname: "127.0.0.1",
    port: listenPort!,
    reusePort: true,
  });
  for await (const conn of listener) {
    serve(conn, targetPort!).catch(() => conn.close());
  }
}
