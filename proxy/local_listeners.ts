/** A listening TCP socket of this network namespace. */
export interface LocalListener {
  /** 4 or 16 bytes in network order; all zeros for a wildcard address. */
  address: Uint8Array;
  port: number;
}

/** `st` of a listening socket in `/proc/net/tcp`: `TCP_LISTEN`. */
const LISTEN_STATE = "0A";

/**
 * Reads the listening TCP sockets of this network namespace from
 * `/proc/net/tcp` and `/proc/net/tcp6`. A file that cannot be read, such as
 * `tcp6` without IPv6, counts as empty.
 */
export function readLocalListeners(): LocalListener[] {
  const listeners: LocalListener[] = [];
  for (const file of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text: string;
    try {
      text = Deno.readTextFileSync(file);
    } catch {
      continue;
    }
    listeners.push(...parseProcNetTcp(text));
  }
  return listeners;
}

/**
 * Parses the listening sockets out of the text of `/proc/net/tcp` or
 * `/proc/net/tcp6`. The kernel prints each 32-bit word of an address as a
 * hex number in host byte order (little-endian on x86 and arm64), and the
 * port as a plain hex number.
 */
export function parseProcNetTcp(text: string): LocalListener[] {
  const listeners: LocalListener[] = [];
  for (const line of text.split("\n").slice(1)) {
    const fields = line.trim().split(/\s+/);
    const local = fields[1];
    if (local === undefined || fields[3] !== LISTEN_STATE) continue;
    const [hex, portHex] = local.split(":");
    if (hex === undefined || portHex === undefined) continue;
    if (hex.length !== 8 && hex.length !== 32) continue;
    const address = new Uint8Array(hex.length / 2);
    for (let word = 0; word < hex.length / 8; word++) {
      const value = parseInt(hex.slice(word * 8, word * 8 + 8), 16);
      new DataView(address.buffer).setUint32(word * 4, value, true);
    }
    listeners.push({ address, port: parseInt(portHex, 16) });
  }
  return listeners;
}
