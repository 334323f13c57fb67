/**
 * Helpers for tests that attach BPF programs. They run as root in a network
 * namespace of their own with a bpffs at /sys/fs/bpf, as `scripts/test.sh`
 * sets up with `unshare --net --mount`.
 *
 * @module
 */

import { MSG_NOSIGNAL, net } from "../ffi/net.ts";
import { closeFd } from "../ffi/libc.ts";
import { objGet } from "../ffi/bpf_fd.ts";
import type { MapName } from "./layout.ts";
import { detachSteering, statePath } from "./pinned_state.ts";

/**
 * Options for tests that load BPF programs: they are skipped unless the
 * process runs as root, as `scripts/test.sh` does for non-root users.
 */
export const NEEDS_ROOT: { ignore: boolean } = { ignore: Deno.uid() !== 0 };

/** Directory of the repository. */
export const ROOT = new URL("..", import.meta.url).pathname;

/**
 * Throws unless this process runs in a network namespace with no interface
 * but loopback, such as a new one from `unshare --net`, and /sys/fs/bpf is a
 * bpffs. Tests then never attach programs to a namespace in real use.
 */
export function requireTestNamespace(): void {
  const interfaces = Deno.readTextFileSync("/proc/self/net/dev")
    .split("\n")
    .slice(2)
    .map((line) => line.split(":")[0]?.trim())
    .filter((name) => name !== undefined && name !== "");
  if (interfaces.some((name) => name !== "lo")) {
    throw new Error(
      "BPF tests must run in a network namespace of their own, but this one " +
        `has ${interfaces.join(", ")}: use scripts/test.sh, or "unshare ` +
        "--net --mount sh -c 'ip link set lo up; mount -t bpf bpf " +
        `/sys/fs/bpf; deno test -A'"`,
    );
  }
  const mounts = Deno.readTextFileSync("/proc/self/mountinfo");
  if (!/ \/sys\/fs\/bpf .* - bpf /.test(mounts)) {
    throw new Error(
      'BPF tests need a bpffs at /sys/fs/bpf: "mount -t bpf bpf /sys/fs/bpf"',
    );
  }
}

/** Pin root of its own for one test, detached again on dispose. */
export class TestPinRoot implements Disposable {
  readonly path = `/sys/fs/bpf/anyport-test-${crypto.randomUUID().slice(0, 8)}`;

  constructor() {
    requireTestNamespace();
  }

  [Symbol.dispose](): void {
    detachSteering(this.path);
  }
}

/**
 * Connects, reads the server's first line and closes.
 *
 * @returns the line, or the name of the error, such as "ConnectionRefused"
 */
export async function request(hostname: string, port: number): Promise<string> {
  let conn: Deno.TcpConn;
  try {
    conn = await Deno.connect({ hostname, port });
  } catch (error) {
    return (error as Error).name;
  }
  try {
    const buffer = new Uint8Array(256);
    let text = "";
    while (!text.includes("\n")) {
      const n = await conn.read(buffer);
      if (n === null) break;
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
    return text.trim();
  } catch (error) {
    return (error as Error).name;
  } finally {
    conn.close();
  }
}

/**
 * Writes `line` and a newline to `conn`, then closes it. `conn` is a Deno
 * connection or the descriptor of an accepted socket.
 */
export async function reply(
  conn: Deno.TcpConn | number,
  line: string,
): Promise<void> {
  if (typeof conn === "number") {
    const bytes = new TextEncoder().encode(`${line}\n`);
    // A new socket's send buffer takes a line at once, even non-blocking.
    net().send(conn, bytes, bytes.length, MSG_NOSIGNAL);
    net().close(conn);
    return;
  }
  try {
    await conn.write(new TextEncoder().encode(`${line}\n`));
  } catch {
    // The client may be gone already.
  } finally {
    conn.close();
  }
}

/**
 * Requests every port in `ports` with `parallel` requests in flight.
 *
 * @returns the response per port
 */
export async function requestAll(
  hostname: string,
  ports: readonly number[],
  parallel = 32,
): Promise<Map<number, string>> {
  const results = new Map<number, string>();
  let next = 0;
  const worker = async () => {
    while (next < ports.length) {
      const port = ports[next++]!;
      results.set(port, await request(hostname, port));
    }
  };
  await Promise.all(Array.from({ length: parallel }, worker));
  return results;
}

/**
 * Requests the ports in turn from `parallel` clients until `stop` settles,
 * at most `maxRequests` times in all.
 *
 * @returns the number of requests and the responses for which `expected`
 * returned false, as "port: response"
 */
export async function requestUntil(
  hostname: string,
  ports: readonly number[],
  expected: (port: number, response: string) => boolean,
  stop: Promise<unknown>,
  parallel = 4,
  maxRequests = 20_000,
): Promise<{ count: number; failures: string[] }> {
  let stopped = false;
  stop.then(() => stopped = true, () => stopped = true);
  const failures: string[] = [];
  let count = 0;
  const client = async () => {
    while (!stopped && count < maxRequests) {
      const port = ports[count++ % ports.length]!;
      const response = await request(hostname, port);
      if (!expected(port, response)) failures.push(`${port}: ${response}`);
    }
  };
  await Promise.all(Array.from({ length: parallel }, client));
  return { count, failures };
}

/**
 * Makes the pinned map `name` of the steering state under `pinRoot`
 * read-only for system calls, for good (`BPF_MAP_FREEZE`), so that the next
 * write to it fails with `EPERM`. Only for a test's own pin root.
 */
export function freezeMap(pinRoot: string, name: MapName): void {
  const library = Deno.dlopen("libbpf.so.1", {
    bpf_map_freeze: { parameters: ["i32"], result: "i32" },
  });
  const fd = objGet(`${statePath(pinRoot)}/${name}`);
  try {
    const result = library.symbols.bpf_map_freeze(fd);
    if (result < 0) throw new Error(`bpf_map_freeze failed: ${result}`);
  } finally {
    closeFd(fd);
    library.close();
  }
}
