import assert from "node:assert/strict";
import {
  closeWithReset,
  EINPROGRESS,
  lastErrno,
  net,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  socketError,
} from "../ffi/net.ts";
import { parseAddress } from "./prefix.ts";
import { AF_INET, encodeSockAddr } from "./sockaddr.ts";

const ECONNREFUSED = 111;
import { type PortRange, readPortRange, SourcePorts } from "./source_ports.ts";

/** Returns `count` ports at a random place inside the namespace's range. */
function windowOf(count: number): PortRange {
  const range = readPortRange();
  assert.ok(range, "cannot read net.ipv4.ip_local_port_range");
  const span = range.high - range.low + 1 - count;
  // Sockets of earlier tests, such as TIME_WAIT ones, can hold a port of a
  // random window, and the cursor then skips it.
  const busy = localPortsInUse();
  for (;;) {
    const low = range.low + Math.floor(Math.random() * span);
    const window = { low, high: low + count - 1 };
    let free = true;
    for (let port = low; port <= window.high; port++) {
      if (busy.has(port)) free = false;
    }
    if (free) return window;
  }
}

/** Returns the local ports of every TCP socket, from /proc/net/tcp{,6}. */
function localPortsInUse(): Set<number> {
  const ports = new Set<number>();
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    for (const line of Deno.readTextFileSync(file).split("\n").slice(1)) {
      const local = line.trim().split(/\s+/)[1];
      if (local !== undefined) ports.add(parseInt(local.split(":")[1]!, 16));
    }
  }
  return ports;
}

/**
 * Connects a new socket through `ports` and returns the source port of the
 * accepted connection. The client closes with a reset, so no TIME_WAIT
 * socket keeps its port from the next test connect.
 */
async function connectThrough(
  ports: SourcePorts,
  listener: Deno.TcpListener,
  now = Date.now(),
): Promise<number> {
  const symbols = net();
  const fd = symbols.socket(
    AF_INET,
    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    0,
  );
  assert.ok(fd >= 0);
  const sockaddr = sockAddrOf(listener.addr.port);
  try {
    const result = ports.connect(fd, sockaddr, now);
    if (result < 0) assert.equal(lastErrno(), EINPROGRESS);
    const accepted = await listener.accept();
    const port = accepted.remoteAddr.port;
    closeWithReset(fd);
    accepted.close();
    return port;
  } catch (error) {
    symbols.close(fd);
    throw error;
  }
}

/** One encoded address per port, as `dial.ts` caches them. */
const sockAddrs = new Map<number, Uint8Array<ArrayBuffer>>();

function sockAddrOf(port: number): Uint8Array<ArrayBuffer> {
  let sockaddr = sockAddrs.get(port);
  if (sockaddr === undefined) {
    sockaddr = encodeSockAddr(parseAddress("127.0.0.1")!, port);
    sockAddrs.set(port, sockaddr);
  }
  return sockaddr;
}

/** Time between connects in the tests below, slower than any pass limit. */
const SLOW_MS = 60_000;

Deno.test("SourcePorts connects from the ports in turn", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const window = windowOf(6);
  const ports = new SourcePorts(window);
  assert.ok(ports.active);
  const seen: number[] = [];
  for (let i = 0; i < 5; i++) {
    seen.push(await connectThrough(ports, listener, i * SLOW_MS));
  }
  for (const port of seen) {
    assert.ok(port >= window.low, `port ${port}`);
    assert.ok(port <= window.high, `port ${port}`);
    assert.equal((port - window.low) % 2, 0, `port ${port}`);
  }
  for (let i = 1; i < seen.length; i++) {
    const previous = seen[i - 1]!;
    const expected = previous + 2 > window.high ? window.low : previous + 2;
    assert.equal(seen[i], expected);
  }
});

Deno.test("SourcePorts skips a port that a listener holds", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const window = windowOf(5);
  using _listening = Deno.listen({ hostname: "0.0.0.0", port: window.low + 2 });
  const ports = new SourcePorts(window);
  const seen = new Set<number>();
  for (let i = 0; i < 6; i++) {
    seen.add(await connectThrough(ports, listener, i * SLOW_MS));
  }
  assert.ok(!seen.has(window.low + 2), `ports ${[...seen]}`);
  assert.ok(seen.has(window.low), `ports ${[...seen]}`);
  assert.ok(seen.has(window.high), `ports ${[...seen]}`);
  // A port that stays in use is no sign of the rate, so the cursor
  // keeps to one parity.
  assert.ok(!seen.has(window.low + 1), `ports ${[...seen]}`);
  assert.ok(!seen.has(window.low + 3), `ports ${[...seen]}`);
});

Deno.test("SourcePorts never connects a socket to itself", async () => {
  const window = windowOf(3);
  // Nothing listens on the target port, and it is one of the cursor's.
  const target = sockAddrOf(window.high);
  const ports = new SourcePorts(window);
  const symbols = net();
  for (let i = 0; i < 4; i++) {
    const fd = symbols.socket(
      AF_INET,
      SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
      0,
    );
    assert.ok(fd >= 0);
    try {
      const result = ports.connect(fd, target, i * SLOW_MS);
      if (result < 0) assert.equal(lastErrno(), EINPROGRESS);
      await new Promise((resolve) => setTimeout(resolve, 20));
      assert.equal(socketError(fd), ECONNREFUSED, `connect ${i}`);
    } finally {
      symbols.close(fd);
    }
  }
});

Deno.test("SourcePorts leaves the choice to the kernel when all are taken", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const window = windowOf(2);
  using _first = Deno.listen({ hostname: "0.0.0.0", port: window.low });
  using _second = Deno.listen({ hostname: "0.0.0.0", port: window.high });
  const ports = new SourcePorts(window);
  for (let i = 0; i < 3; i++) {
    const port = await connectThrough(ports, listener);
    assert.ok(port < window.low || port > window.high, `port ${port}`);
  }
});

Deno.test("SourcePorts without a range connects as usual", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const ports = new SourcePorts(undefined);
  assert.equal(ports.active, false);
  const port = await connectThrough(ports, listener);
  assert.ok(port > 0);
});

Deno.test("readPortRange() reads the namespace's range", () => {
  const range = readPortRange();
  assert.ok(range);
  const text = Deno.readTextFileSync("/proc/sys/net/ipv4/ip_local_port_range");
  assert.deepEqual(text.trim().split(/\s+/).map(Number), [
    range.low,
    range.high,
  ]);
});
