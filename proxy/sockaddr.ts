/**
 * Socket addresses in the kernel's binary form (`struct sockaddr_in` and
 * `sockaddr_in6`), as the data path passes them to and from libc.
 *
 * @module
 */

import { formatHostPort } from "./address.ts";
import { formatAddress } from "./prefix.ts";

export const AF_INET = 2;
export const AF_INET6 = 10;

/** Size of `struct sockaddr_storage`, enough for every family. */
export const SOCKADDR_SIZE = 128;

/** An IP socket address, decoded. */
export class SocketAddress {
  /** `AF_INET` or `AF_INET6`. */
  readonly family: number;
  /** 4 or 16 bytes in network order. */
  readonly address: readonly number[];
  readonly port: number;
  #label: string | undefined;

  constructor(family: number, address: readonly number[], port: number) {
    this.family = family;
    this.address = address;
    this.port = port;
  }

  /**
   * The address as `host:port`, with IPv4-mapped IPv6 addresses (which a
   * dual-stack socket reports for IPv4 peers) shown as plain IPv4.
   */
  get label(): string {
    this.#label ??= formatHostPort(
      formatAddress(Uint8Array.from(this.plainAddress)),
      this.port,
    );
    return this.#label;
  }

  /** The address bytes with IPv4-mapped IPv6 turned into IPv4. */
  get plainAddress(): readonly number[] {
    return unmapped(this.address);
  }
}

/**
 * Decodes a socket address that the kernel wrote into `buffer`.
 *
 * @returns the address, or `undefined` for a family other than IPv4 or IPv6
 */
export function decodeSockAddr(buffer: Uint8Array): SocketAddress | undefined {
  const family = buffer[0]! | (buffer[1]! << 8);
  const port = (buffer[2]! << 8) | buffer[3]!;
  // Plain arrays, because a typed array per connection would cost an
  // ArrayBuffer each.
  if (family === AF_INET) {
    return new SocketAddress(family, copy(buffer, 4, 8), port);
  }
  if (family === AF_INET6) {
    return new SocketAddress(family, copy(buffer, 8, 24), port);
  }
  return undefined;
}

/** Encodes an address of 4 or 16 bytes and a port for `connect(2)`. */
export function encodeSockAddr(
  address: Uint8Array,
  port: number,
): Uint8Array<ArrayBuffer> {
  // sockaddr_in is 16 bytes with the address at 4, sockaddr_in6 28 at 8.
  const v4 = address.length === 4;
  const buffer = new Uint8Array(v4 ? 16 : 28);
  buffer[0] = v4 ? AF_INET : AF_INET6;
  buffer[2] = port >> 8;
  buffer[3] = port & 0xff;
  buffer.set(address, v4 ? 4 : 8);
  return buffer;
}

function copy(buffer: Uint8Array, start: number, end: number): number[] {
  const bytes = new Array<number>(end - start);
  for (let i = start; i < end; i++) bytes[i - start] = buffer[i]!;
  return bytes;
}

/** Returns the IPv4 address inside an IPv4-mapped IPv6 one, else `address`. */
export function unmapped(address: readonly number[]): readonly number[] {
  if (address.length !== 16) return address;
  for (let i = 0; i < 10; i++) if (address[i] !== 0) return address;
  if (address[10] !== 0xff || address[11] !== 0xff) return address;
  return address.slice(12, 16);
}
