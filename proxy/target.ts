import { quoted } from "./quote.ts";
import { parseAddress } from "./prefix.ts";

/** Target address from the config, such as `app.internal:6001` or `[::1]:9001`. */
export interface TargetAddress {
  /** Host name or literal address, without brackets. */
  hostname: string;
  port: number;
  /** Whether `hostname` is a literal IP address, which needs no lookup. */
  literal: boolean;
  /** The text as written in the config, used in logs. */
  label: string;
}

/**
 * Host that the system resolver reads as a number, not a name: labels of
 * decimal digits or of `0x` and hex digits, such as `127.1` or `0x7f000001`.
 */
const NUMERIC_HOST = /^(?:\d+|0x[0-9a-f]*)(?:\.(?:\d+|0x[0-9a-f]*))*\.?$/i;

/** Host name: dot-separated labels of letters, digits, `_` and inner `-`. */
const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?(?:\.[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?)*\.?$/;

/**
 * Parses a target written as `host:port`. IPv6 literals must be in
 * brackets, as in `[::1]:9001`, because `::1:9001` is ambiguous.
 *
 * @returns the address, or an error message naming the value and the fix
 */
export function parseTarget(value: unknown): TargetAddress | string {
  if (typeof value !== "string") {
    return `${JSON.stringify(value)} is not a target: use a "host:port" string`;
  }
  if (value.includes("://")) {
    return `${
      quoted(value)
    } is not a target: write "host:port" without a scheme, such as "app.internal:8080"`;
  }
  if (value.startsWith("[")) {
    const close = value.indexOf("]");
    if (close < 0) {
      return `${
        quoted(value)
      } is not a target: the "]" after the IPv6 address is missing, use "[address]:port"`;
    }
    if (!value.startsWith(":", close + 1)) {
      return `${
        quoted(value)
      } is not a target: the port after "]" is missing, use "[address]:port"`;
    }
    const zone = value.indexOf("%");
    if (zone >= 0 && zone < close) {
      return `${quoted(value)} is not a target: zone IDs such as ${
        quoted(value.slice(zone, close))
      } are not supported, use a global or unique local IPv6 address`;
    }
  }
  const colon = value.lastIndexOf(":");
  if (colon < 0) {
    return `${
      quoted(value)
    } is not a target: the port is missing, use "host:port"`;
  }
  let host = value.slice(0, colon);
  const portText = value.slice(colon + 1);
  if (host.startsWith("[") && host.endsWith("]")) {
    host = host.slice(1, -1);
    if (!host.includes(":") || parseAddress(host) === undefined) {
      return `${quoted(value)} is not a target: ${
        quoted(host)
      } in brackets is not an IPv6 address`;
    }
  } else if (host.includes(":")) {
    return `${
      quoted(value)
    } is not a target: write IPv6 addresses in brackets, such as "[::1]:9001"`;
  } else if (host === "" || !HOSTNAME.test(host)) {
    return `${quoted(value)} is not a target: ${
      quoted(host)
    } is not a host name or IPv4 address`;
  } else if (NUMERIC_HOST.test(host) && parseAddress(host) === undefined) {
    return `${quoted(value)} is not a target: ${
      quoted(host)
    } is not an IPv4 address`;
  }
  if (!/^\d{1,5}$/.test(portText)) {
    return `${quoted(value)} is not a target: ${
      quoted(portText)
    } is not a port (1-65535)`;
  }
  const port = Number(portText);
  if (port < 1 || port > 65535) {
    return `${
      quoted(value)
    } is not a target: port ${port} is out of range (1-65535)`;
  }
  if (portText.startsWith("0")) {
    return `${quoted(value)} is not a target: ${
      quoted(portText)
    } has a leading zero, write the port as ${port}`;
  }
  return {
    hostname: host,
    port,
    literal: parseAddress(host) !== undefined,
    label: value,
  };
}
