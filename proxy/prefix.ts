/** IP address prefix in CIDR notation, such as `127.0.0.0/8` or `::1/128`. */
export interface Prefix {
  family: 4 | 6;
  /** Network address in network byte order: 4 bytes for IPv4, 16 for IPv6. */
  address: Uint8Array;
  /** Number of leading bits that must match. */
  length: number;
}

/**
 * Parses an IPv4 or IPv6 prefix such as `10.0.0.0/8` or `2001:db8::/32`.
 * Host bits set below the prefix length are rejected, as in `10.0.0.1/8`.
 *
 * @throws {SyntaxError} naming the text and what is wrong with it
 */
export function parsePrefix(text: string): Prefix {
  const slash = text.indexOf("/");
  if (slash < 0) {
    throw new SyntaxError(
      `"${text}" is not a prefix: expected an address and a length, such as "127.0.0.0/8"`,
    );
  }
  const addressText = text.slice(0, slash);
  const lengthText = text.slice(slash + 1);
  const address = parseAddress(addressText);
  if (address === undefined) {
    throw new SyntaxError(
      `"${text}" is not a prefix: "${addressText}" is not an IPv4 or IPv6 address`,
    );
  }
  const maxLength = address.length * 8;
  if (
    !/^(0|[1-9]\d{0,2})$/.test(lengthText) || Number(lengthText) > maxLength
  ) {
    throw new SyntaxError(
      `"${text}" is not a prefix: the length must be 0-${maxLength}, without leading zeros`,
    );
  }
  const length = Number(lengthText);
  if (!hostBitsClear(address, length)) {
    throw new SyntaxError(
      `"${text}" is not a prefix: address bits are set past /${length}`,
    );
  }
  return { family: address.length === 4 ? 4 : 6, address, length };
}

/** Formats a prefix back to CIDR notation, using the shortest IPv6 form. */
export function formatPrefix(prefix: Prefix): string {
  return `${formatAddress(prefix.address)}/${prefix.length}`;
}

/** Returns whether `address` (4 or 16 bytes) lies inside `prefix`. */
export function prefixContains(
  prefix: Prefix,
  address: ArrayLike<number>,
): boolean {
  if (address.length !== prefix.address.length) return false;
  for (let bit = 0; bit < prefix.length; bit += 8) {
    const byte = bit >> 3;
    const bits = Math.min(8, prefix.length - bit);
    const mask = (0xff << (8 - bits)) & 0xff;
    if (
      ((address[byte] ?? 0) & mask) !== ((prefix.address[byte] ?? 0) & mask)
    ) {
      return false;
    }
  }
  return true;
}

/**
 * Parses a literal IPv4 address (dotted quad) or IPv6 address, without
 * brackets or zone. Returns the bytes in network order, or `undefined`.
 */
export function parseAddress(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const bytes = new Uint8Array(4);
  for (const [i, part] of parts.entries()) {
    if (!/^(0|[1-9]\d{0,2})$/.test(part) || Number(part) > 255) {
      return undefined;
    }
    bytes[i] = Number(part);
  }
  return bytes;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = parseGroups(halves[0] ?? "");
  const tail = halves.length === 2 ? parseGroups(halves[1] ?? "") : [];
  if (head === undefined || tail === undefined) return undefined;
  // A dotted quad may only fill the last 32 bits of the address.
  if (halves.length === 2 && (halves[0] ?? "").includes(".")) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [
    ...head,
    ...new Array<number>(Math.max(missing, 0)).fill(0),
    ...tail,
  ];
  const bytes = new Uint8Array(16);
  for (const [i, group] of groups.entries()) {
    bytes[i * 2] = group >> 8;
    bytes[i * 2 + 1] = group & 0xff;
  }
  return bytes;
}

/** Parses colon-separated hex groups; a final dotted quad counts as two. */
function parseGroups(text: string): number[] | undefined {
  if (text === "") return [];
  const groups: number[] = [];
  const parts = text.split(":");
  for (const [i, part] of parts.entries()) {
    if (i === parts.length - 1 && part.includes(".")) {
      const v4 = parseIpv4(part);
      if (v4 === undefined) return undefined;
      groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
    } else if (/^[0-9a-fA-F]{1,4}$/.test(part)) {
      groups.push(parseInt(part, 16));
    } else {
      return undefined;
    }
  }
  return groups;
}

function hostBitsClear(address: Uint8Array, length: number): boolean {
  for (let bit = length; bit < address.length * 8; bit++) {
    if ((address[bit >> 3]! >> (7 - (bit & 7))) & 1) return false;
  }
  return true;
}

/**
 * Formats 4 or 16 address bytes, using the shortest IPv6 form, with an
 * IPv4-mapped address in its dotted form (`::ffff:127.0.0.1`).
 */
export function formatAddress(address: Uint8Array): string {
  if (address.length === 4) return address.join(".");
  if (isMapped(address)) return `::ffff:${address.subarray(12).join(".")}`;
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) {
    groups.push((address[i]! << 8) | address[i + 1]!);
  }
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) [bestStart, bestLength] = [i, j - i];
    i = j === i ? i + 1 : j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  const head = hex.slice(0, bestStart).join(":");
  const tail = hex.slice(bestStart + bestLength).join(":");
  return `${head}::${tail}`;
}

/** Returns whether a 16-byte address is an IPv4-mapped one, `::ffff:a.b.c.d`. */
function isMapped(address: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (address[i] !== 0) return false;
  return address[10] === 0xff && address[11] === 0xff;
}
