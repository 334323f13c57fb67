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
 * Bind address of the one proxy socket in BPF mode when it takes both
 * families. Only an IPv6 socket can take steered connections of both, and
 * only if it is not IPv6-only, because bpf_sk_assign rejects IPv4
 * connections for IPv6-only sockets. Linux makes a socket IPv6-only when it
 * binds to a plain IPv6 address such as `::1`, but not for a v4-mapped one.
 * Unlike `::`, this address also keeps the socket reachable without BPF only
 * from this host, on 127.0.0.1. Port 0 lets the kernel pick a free port, so
 * it never collides with a port in use.
 */
export const BIND_HOSTNAME = "::ffff:127.0.0.1";

/**
 * Bind address of the proxy socket when every steered prefix is IPv4. IPv4
 * connections accepted on an IPv6 socket become v4-mapped IPv6 sockets,
 * which cost about 5% more CPU per short connection (see NOTES.md).
 */
export const BIND_HOSTNAME_IPV4 = "127.0.0.1";

const AF_INET6 = 10;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const IPPROTO_IPV6 = 41;
const IPV6_V6ONLY = 26;
const BACKLOG = 4096;
const BIND_V6ONLY = "/proc/sys/net/ipv6/bindv6only";

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
 * Opens the proxy socket with `Deno.listen`: an IPv4 socket, or with `ipv6`
 * a socket that takes both families. Where `net.ipv6.bindv6only` is 1, an
 * IPv6 socket would be IPv6-only and the bind to a v4-mapped address fails,
 * so that one is opened through libc with `IPV6_V6ONLY` off.
 *
 * @throws {Error} naming the cause and the fix when neither works
 */
export function openProxySocket(ipv6: boolean): ProxySocket {
  if (!ipv6) return openIpv4();
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: BIND_HOSTNAME, port: 0 });
  } catch (error) {
    if (readBindV6Only() !== "1") {
      throw new Error(
        `Cannot open the proxy socket on [${BIND_HOSTNAME}]:0: ` +
          `${(error as Error).message}; BPF mode needs IPv6 sockets, so ` +
          `boot without ipv6.disable=1`,
        { cause: error },
      );
    }
    return openDualStack();
  }
  return {
    fd: findListenerFd(listener),
    addr: listener.addr,
    ipv6: true,
    close: () => listener.close(),
  };
}

function openIpv4(): ProxySocket {
  let listener: Deno.TcpListener;
  try {
    listener = Deno.listen({ hostname: BIND_HOSTNAME_IPV4, port: 0 });
  } catch (error) {
    throw new Error(
      `Cannot open the proxy socket on ${BIND_HOSTNAME_IPV4}:0: ` +
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

function readBindV6Only(): string | undefined {
  try {
    return Deno.readTextFileSync(BIND_V6ONLY).trim();
  } catch {
    return undefined;
  }
}

/** Opens the proxy socket through libc, with `IPV6_V6ONLY` set to 0. */
function openDualStack(): ProxySocket {
  const symbols = net();
  const fd = symbols.socket(
    AF_INET6,
    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
    0,
  );
  if (fd < 0) throw socketError("socket", lastErrno());
  const fail = (call: string): never => {
    const code = lastErrno();
    symbols.close(fd);
    throw socketError(call, code);
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
  mapped.set([0xff, 0xff, 127, 0, 0, 1], 10);
  const address = encodeSockAddr(mapped, 0);
  if (symbols.bind(fd, address, address.length) < 0) fail("bind");
  if (symbols.listen(fd, BACKLOG) < 0) fail("listen");
  const local = getSockName(fd);
  if (local === undefined) fail("getsockname");
  return {
    fd,
    addr: { transport: "tcp", hostname: BIND_HOSTNAME, port: local!.port },
    ipv6: true,
    close: () => symbols.close(fd),
  };
}

function socketError(call: string, code: number): Error {
  return new Error(
    `Cannot open the proxy socket on [${BIND_HOSTNAME}]:0 with ` +
      `net.ipv6.bindv6only set to 1: ${new OsError(call, code).message}`,
  );
}
