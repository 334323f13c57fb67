/**
 * Echo server for the demo and the tests: echoes every byte back on each
 * port given on the command line, and half-closes when the client does.
 *
 * Usage: deno run --allow-net scripts/echo_server.ts [--host ADDR] PORT...
 *
 * @module
 */
import { parseArgs } from "node:util";

async function echo(conn: Deno.TcpConn): Promise<void> {
  const buffer = new Uint8Array(64 * 1024);
  try {
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      let offset = 0;
      while (offset < n) offset += await conn.write(buffer.subarray(offset, n));
    }
    await conn.closeWrite();
  } catch {
    // The client went away; nothing to clean up beyond closing.
  } finally {
    try {
      conn.close();
    } catch {
      // Already closed.
    }
  }
}

async function serve(hostname: string, port: number): Promise<void> {
  const listener = Deno.listen({ hostname, port });
  for await (const conn of listener) echo(conn);
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { host: { type: "string", default: "127.0.0.1" } },
  });
  const ports = positionals.map(Number);
  if (ports.length === 0 || ports.some((p) => !Number.isInteger(p))) {
    // deno-lint-ignore no-console
    console.error("Usage: echo_server.ts [--host ADDR] PORT...");
    Deno.exit(2);
  }
  await Promise.all(ports.map((port) => serve(values.host, port)));
}
