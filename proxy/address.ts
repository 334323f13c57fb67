/** Formats an address and port, with brackets around IPv6 literals. */
export function formatHostPort(hostname: string, port: number): string {
  return hostname.includes(":")
    ? `[${hostname}]:${port}`
    : `${hostname}:${port}`;
}

/**
 * Formats a socket address as `host:port`. IPv4-mapped IPv6 addresses
 * (`::ffff:192.0.2.1`), which a dual-stack socket reports for IPv4 peers,
 * are shown as plain IPv4.
 */
export function formatAddr(addr: Deno.Addr): string {
  if (addr.transport !== "tcp" && addr.transport !== "udp") {
    return addr.transport;
  }
  return formatHostPort(unmapIpv4(addr.hostname), addr.port);
}

/** Turns `::ffff:192.0.2.1` into `192.0.2.1`; other addresses stay as they are. */
export function unmapIpv4(hostname: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(hostname)
    ? hostname.slice(7)
    : hostname;
}
