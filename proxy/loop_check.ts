/**
 * Loop detection for the config check: whether a target address leads back
 * into the proxy. It handles only literal loopback addresses and `localhost`
 * names. The proxy catches the other loops when they happen (see
 * `self_connect.ts`).
 *
 * @module
 */

import { parseAddress, prefixContains } from "./prefix.ts";
import type { Settings } from "./settings.ts";
import { unmapped } from "./sockaddr.ts";

const IPV4_LOOPBACK = [127, 0, 0, 1];
const IPV6_LOOPBACK = [...new Array(15).fill(0), 1];

/**
 * Returns whether a connection to `host`, on a port that the proxy serves,
 * reaches the proxy itself through loopback: in BPF mode when the address
 * is inside `SteerPrefixes`, with per-port listeners when `ListenAddress`
 * accepts connections to it.
 */
export function reachesProxy(host: string, settings: Settings): boolean {
  return loopbackDestinations(host).some((address) =>
    settings.mode === "bpf"
      ? settings.steerPrefixes.some((prefix) => prefixContains(prefix, address))
      : listensOn(settings.listenAddress, address)
  );
}

/**
 * Returns the loopback addresses that a connect to `host` can reach, with
 * IPv4-mapped addresses as IPv4. A literal loopback address reaches itself,
 * and an unspecified address reaches 127.0.0.1 or ::1, because Linux
 * connects it to the local host. `localhost` and names under it (RFC 6761)
 * can reach both, whichever they resolve to.
 */
function loopbackDestinations(host: string): (readonly number[])[] {
  const name = host.toLowerCase().replace(/\.$/, "");
  if (name === "localhost" || name.endsWith(".localhost")) {
    return [IPV4_LOOPBACK, IPV6_LOOPBACK];
  }
  const bytes = parseAddress(host);
  if (bytes === undefined) return [];
  const address = unmapped(Array.from(bytes));
  const ipv4 = address.length === 4;
  if (address.every((byte) => byte === 0)) {
    return [ipv4 ? IPV4_LOOPBACK : IPV6_LOOPBACK];
  }
  const loopback = ipv4
    ? address[0] === 127
    : address.every((byte, i) => byte === IPV6_LOOPBACK[i]);
  return loopback ? [address] : [];
}

/**
 * Returns whether a socket bound to `listen` accepts connections to
 * `address`. `::` also takes IPv4, because Linux makes IPv6 sockets
 * dual-stack unless `net.ipv6.bindv6only` is set.
 */
function listensOn(listen: string, address: readonly number[]): boolean {
  const bytes = parseAddress(listen);
  // The config check rejects other values, so count them as listening anywhere.
  if (bytes === undefined) return true;
  const bound = unmapped(Array.from(bytes));
  if (bound.every((byte) => byte === 0)) {
    return bound.length === 16 || address.length === 4;
  }
  return bound.length === address.length &&
    bound.every((byte, i) => byte === address[i]);
}
