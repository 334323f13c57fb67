/**
 * The smallest Deno TCP proxy that does what anyport's data path does
 * (copy loops, half-close, TCP_NODELAY), with no config, routing, balancing
 * or logging. It measures how fast Deno's own socket API can go, so the gap
 * between this and anyport is anyport's cost and the rest is Deno's.
 *
 * Usage: deno run --allow-net --unstable-net bench/deno_floor.ts LISTEN_PORT
 * TARGET_PORT [loop|streams] [BUFFER_BYTES]
 *
 * `loop` (the default) copies with `read` and `write` into a buffer of
 * BUFFER_BYTES (1024 unless given). `streams` pipes each connection's
 * `readable` into the other's `writable` with `pipeTo`, as the web streams
 * API suggests; Deno then reads in chunks of its own size. It is not a
 * correct proxy: when a `readable` ends, Deno closes the whole connection
 * (Deno 2.9), so a client that sends its request and a FIN never gets the
 * reply. It serves to measure what streams cost. Start it twice to compare
 * one process with two sharing the port (SO_REUSEPORT). Loopback only.
 *
 * @module
 */

/** A copier of one direction of a connection. */
type Copy = (
  from: Deno.TcpConn,
  to: Deno.TcpConn,
  ended: { count: number },
) => Promise<void>;

function loopCopy(bufferBytes: number): Copy {
  return async (from, to, ended) => {
    const buffer = new Uint8Array(bufferBytes);
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
  };
}

/**
 * Copies with `pipeTo` and then sends the FIN with `closeWrite`. The
 * writable stays open (`preventClose`), but Deno has closed `from` by then,
 * so nothing can go back to it (see the module doc).
 */
const streamCopy: Copy = async (from, to, ended) => {
  try {
    await from.readable.pipeTo(to.writable, { preventClose: true });
    if (++ended.count < 2) await to.closeWrite();
  } catch {
    // A reset ends this direction; the other one ends with the close.
  }
};

async function serve(
  client: Deno.TcpConn,
  targetPort: number,
  copy: Copy,
): Promise<void> {
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
  const [listenPort, targetPort] = Deno.args.slice(0, 2).map(Number);
  const mode = Deno.args[2] ?? "loop";
  const bufferBytes = Number(Deno.args[3] ?? 1024);
  if (mode !== "loop" && mode !== "streams") {
    throw new Error(`Invalid mode "${mode}": use loop or streams`);
  }
  if (!Number.isInteger(bufferBytes) || bufferBytes < 1) {
    throw new Error(
      `Invalid BUFFER_BYTES "${Deno.args[3]}": use a positive integer`,
    );
  }
  const copy = mode === "streams" ? streamCopy : loopCopy(bufferBytes);
  const listener = Deno.listen({
    hostname: "127.0.0.1",
    port: listenPort!,
    reusePort: true,
  });
  for await (const conn of listener) {
    serve(conn, targetPort!, copy).catch(() => conn.close());
  }
}
