import { getSockName } from "../ffi/socket_fd.ts";
import { OsError } from "../ffi/libc.ts";
import {
  lastErrno,
  net,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
  SOCK_STREAM,
} from "../ffi/net.ts";
import { findListenerFd } from "../ffi/socket_fd.ts";
import { encodeSockAddr } from "./sockaddr.ts";

/**
 * Address that the proxy socket binds to first, in its v4-mapped form for a
 * dual-stack socket.
 */
const FIRST_ADDRESS = "127.0.0.1";

const AF_INET6 = 10;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const BACKLOG = 4096;
const BIND_V6ONLY = "/proc/sys/net/ipv6/bindv6only";
const EADDRINUSE = 98;

/** The listening socket of BPF mode. */
export interface ProxySocket {
  readonly fd: number;
  /** Local address, reachable directly only from this host. */
  readonly addr: Deno.NetAddr;
  /** Whether it takes IPv6 connections too, or IPv4 connections only. */
  readonly ipv6: boolean;
  close(): void;
}

/**
 * Number of random loopback addresses tried after 127.0.0.1 when no port of
 * the ephemeral range is free there. TIME_WAIT sockets of connections from
 * 127.0.0.1, such as those of local clients or of the proxy's own
 * connections to local targets, can take every port, and a bind to port 0
 * then fails with `EADDRINUSE`. They do not block the same port on another
 * loopback address.
 */
const OTHER_ADDRESSES = 8;

/**
 * Opens the proxy socket with `Deno.listen`: an IPv4 socket, or with `ipv6`
 * a socket that takes both families. Where `net.ipv6.bindv6only` is 1, an
 * IPv6 socket would be IPv6-only and the bind to a v4-mapped address fails,
 * so that one is opened through libc with `IPV6_V6ONLY` off. When no port is
 * free on 127.0.0.1, it binds to another loopback address (127.x.y.z).
 *
 * @throws {Error} naming the cause and the fix when neither works
 */
export function openProxySocket(ipv6: boolean): ProxySocket {
  for (const address of loopbackAddresses()) {
    const socket = ipv6 ? openDualStack(address) : openIpv4(address);
    if (socket !== undefined) return socket;
  }
  throw new Error(
    "Cannot open the proxy socket: no port of the ephemeral range " +
      "(net.ipv4.ip_local_port_range) is free on 127.0.0.1 or on " +
      `${OTHER_ADDRESSES} other loopback addresses, most likely because ` +
      "TIME_WAIT connections take them: widen the range, or start again " +
      "once they expire (60 s)",
  );
}

/** Returns 127.0.0.1, then `OTHER_ADDRESSES` random loopback addresses. */
function loopbackAddresses(): string[] {
  const byte = () => 1 + Math.floor(Math.random() * 254);
  const addresses = [FIRST_ADDRESS];
  for (let i = 0; i < OTHER_ADDRESSES; i++) {
    addresses.push(`127.${byte()}.${byte()}.${byte()}`);
  }
  return addresses;
}

/**
 * Opens an IPv4 socket on `address`, or returns undefined on EADDRINUSE.
 * IPv4 connections accepted on a dual-stack socket are v4-mapped IPv6
 * sockets, which cost about 5% more CPU per short connection (NOTES.md).
 */
function openIpv4(address: string): ProxySocket | undefined {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: address, port: 0 });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return undefined;
    throw new Error(
      `Cannot open the proxy socket on ${address}:0: ` +
        (error as Error).message,
      { cause: error },
    );
  }
  return {
    fd: findListenerFd(listener),
    addr: listener.addr,
    ipv6: false,
    close: () => listener.close(),
  };
}

/**
 * Opens a dual-stack socket on the v4-mapped form of `address`, or returns
 * undefined on EADDRINUSE. Only an IPv6 socket can take steered connections
 * of both families, and only if it is not IPv6-only, because bpf_sk_assign
 * rejects IPv4 connections for IPv6-only sockets. Linux makes a socket
 * IPv6-only when it binds to a plain IPv6 address such as `::1`, but not for
 * a v4-mapped one. Unlike `::`, the address keeps the socket reachable
 * without BPF only from this host. Port 0 lets the kernel pick a free port,
 * so it never collides with a port in use.
 */
function openDualStack(address: string): ProxySocket | undefined {
  const hostname = `::ffff:${address}`;
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname, port: 0 });
  } catch (error) {
    if (error instanceof Deno.errors.AddrInUse) return undefined;
    if (readBindV6Only() !== "1") {
      throw new Error(
        `Cannot open the proxy socket on [${hostname}]:0: ` +
          `${(error as Error).message}; BPF mode needs IPv6 sockets, so ` +
          `boot without ipv6.disable=1`,
        { cause: error },
      );
    }
    return openWithoutV6Only(address);
  }
  return {
    fd: findListenerFd(listener),
    addr: listener.addr,
    ipv6: true,
    close: () => listener.close(),
  };
}

function readBindV6Only(): string | undefined {
  try {
    return Deno.readTextFileSync(BIND_V6ONLY).trim();
  } catch {
    return undefined;
  }
}

/**
 * Opens the proxy socket on the v4-mapped form of `address` through libc,
 * with `IPV6_V6ONLY` set to 0. Returns undefined on EADDRINUSE.
 */
function openWithoutV6Only(address: string): ProxySocket | undefined {
  const symbols = net();
  const fd = symbols.socket(
    AF_INET6,
    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    0,
  );
  if (fd < 0) throw socketError("socket", lastErrno(), address);
  const fail = (call: string): never => {
    const code = lastErrno();
    symbols.close(fd);
    throw socketError(call, code, address);
  };
  const off = new Uint8Array(4);
  if (symbols.setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, off, 4) < 0) {
    fail("setsockopt IPV6_V6ONLY");
  }
  // As Deno.listen does. Accepted connections inherit it, so their
  // TIME_WAIT sockets do not keep a later listener off the steered port.
  const on = new Uint8Array(new Int32Array([1]).buffer);
  if (symbols.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, on, 4) < 0) {
    fail("setsockopt SO_REUSEADDR");
  }
  const mapped = new Uint8Array(16);
  mapped.set([0xff, 0xff, ...address.split(".").map(Number)], 10);
  const sockaddr = encodeSockAddr(mapped, 0);
  if (symbols.bind(fd, sockaddr, sockaddr.length) < 0) {
    if (lastErrno() === EADDRINUSE) {
      symbols.close(fd);
      return undefined;
    }
    fail("bind");
  }
  if (symbols.listen(fd, BACKLOG) < 0) fail("listen");
  const local = getSockName(fd);
  if (local === undefined) fail("getsockname");
  return {
    fd,
    addr: {
      transport: "tcp",
      hostname: `::ffff:${address}`,
      port: local!.port,
    },
    ipv6: true,
    close: () => symbols.close(fd),
  };
}

function socketError(call: string, code: number, address: string): Error {
  return new Error(
    `Cannot open the proxy socket on [::ffff:${address}]:0 with ` +
      `net.ipv6.bindv6only set to 1: ${new OsError(call, code).message}`,
  );
}
