/**
 * Typed access to the maps of the sk_lookup program: steered ports and
 * prefixes, the proxy socket and the counters.
 *
 * @module
 */

import { formatPrefix, type Prefix } from "../proxy/prefix.ts";
import {
  mapDelete,
  mapDeleteBatch,
  mapInsert,
  mapKeys,
  mapLookup,
  mapUpdate,
  mapUpdateBatch,
  objInfo,
  possibleCpus,
} from "../ffi/bpf_fd.ts";
import { closeFd, ENOENT } from "../ffi/libc.ts";
import { LibbpfError } from "../ffi/libbpf.ts";
import {
  ADDED_MAPS,
  COUNTER_NAMES,
  HOST_LITTLE_ENDIAN,
  layoutMismatch,
  MAP_LAYOUTS,
  MAP_NAMES,
  type MapName,
} from "./layout.ts";

/** Counter totals over all CPUs, by name. */
export type Counters = Record<(typeof COUNTER_NAMES)[number], bigint>;

/** Key of the one slot of the `sockets` and `standby` sockmaps. */
const SLOT = new Uint8Array(4);

/** Size of `struct bpf_map_info` up to and including `name`. */
const MAP_INFO_SIZE = 40;

/** Descriptors of every map of the program, owned by this object. */
export class SteeringMaps implements Disposable {
  readonly #fds: Record<MapName, number>;
  #closed = false;

  /**
   * Takes ownership of `fds` after checking each map against its layout.
   * A map of {@linkcode ADDED_MAPS} may be -1: state pinned by an earlier
   * build, without it.
   *
   * @throws {Error} naming the map that differs; the descriptors are closed
   */
  constructor(fds: Record<MapName, number>) {
    this.#fds = fds;
    try {
      for (const name of MAP_NAMES) {
        if (fds[name] >= 0 || !ADDED_MAPS.has(name)) {
          checkLayout(name, fds[name]);
        }
      }
    } catch (error) {
      this[Symbol.dispose]();
      throw error;
    }
  }

  /** Returns whether map `name` is present; see {@linkcode ADDED_MAPS}. */
  has(name: MapName): boolean {
    return this.#fds[name] >= 0;
  }

  /**
   * Takes ownership of the descriptor of a map that was missing, after
   * checking it against its layout.
   *
   * @throws {Error} naming the difference; the descriptor is closed
   */
  adopt(name: MapName, fd: number): void {
    try {
      checkLayout(name, fd);
    } catch (error) {
      closeFd(fd);
      throw error;
    }
    this.#fds[name] = fd;
  }

  /** Returns the map descriptor of `name`, owned by this object. */
  fd(name: MapName): number {
    return this.#fds[name];
  }

  /** Reads the steered ports. */
  readPorts(): Set<number> {
    const keys = mapKeys(
      this.#fds.ports,
      MAP_LAYOUTS.ports.keySize,
      MAP_LAYOUTS.ports.maxEntries,
      "list steered ports",
    );
    return new Set(keys.map((key) => portOf(key)));
  }

  /**
   * Adds ports to the steered set in one system call.
   *
   * @throws {LibbpfError} when the map cannot take them
   */
  addPorts(ports: readonly number[]): void {
    const keys = new Uint16Array(ports);
    const values = new Uint8Array(ports.length).fill(1);
    mapUpdateBatch(
      this.#fds.ports,
      new Uint8Array(keys.buffer),
      values,
      ports.length,
      `add ${ports.length} steered ports`,
    );
  }

  /**
   * Removes ports from the steered set in one system call. Ports that are
   * already gone, removed by another process sharing the pins, are skipped.
   */
  removePorts(ports: readonly number[]): void {
    const keys = new Uint16Array(ports);
    try {
      mapDeleteBatch(
        this.#fds.ports,
        new Uint8Array(keys.buffer),
        ports.length,
        `remove ${ports.length} steered ports`,
      );
    } catch (error) {
      if (!(error instanceof LibbpfError && error.errno === ENOENT)) {
        throw error;
      }
      // The batch stopped at the first missing port; finish one by one.
      for (const port of ports) {
        const key = new Uint8Array(new Uint16Array([port]).buffer);
        mapDelete(this.#fds.ports, key, `remove steered port ${port}`);
      }
    }
  }

  /** Reads the steered destination prefixes, IPv4 first. */
  readPrefixes(): Prefix[] {
    return [...this.#readFamily(4), ...this.#readFamily(6)];
  }

  /** Adds a steered destination prefix; adding one twice is harmless. */
  addPrefix(prefix: Prefix): void {
    mapUpdate(
      this.#prefixFd(prefix.family),
      prefixKey(prefix),
      new Uint8Array([1]),
      `add steered prefix ${formatPrefix(prefix)}`,
    );
  }

  /**
   * Removes a steered destination prefix, matching its length exactly.
   *
   * @returns false when the prefix was not steered
   */
  removePrefix(prefix: Prefix): boolean {
    return mapDelete(
      this.#prefixFd(prefix.family),
      prefixKey(prefix),
      `remove steered prefix ${formatPrefix(prefix)}`,
    );
  }

  /**
   * Returns the socket cookie (`SO_COOKIE`) of the socket in the sockmap,
   * or `undefined` when it is empty.
   */
  socketCookie(): bigint | undefined {
    return this.#readSlot(this.#fds.sockets, "look up proxy socket");
  }

  /**
   * Puts listening socket `fd` into the sockmap, replacing any other in one
   * step, so every steered connection from then on goes to `fd`.
   */
  setSocket(fd: number): void {
    mapUpdate(
      this.#fds.sockets,
      SLOT,
      socketValue(fd),
      `put socket fd ${fd} into the sockmap`,
    );
  }

  /**
   * Puts listening socket `fd` into the sockmap if it is empty. Of several
   * processes that try at once, one succeeds.
   *
   * @returns false when another socket is in the sockmap
   */
  claimSocket(fd: number): boolean {
    return mapInsert(
      this.#fds.sockets,
      SLOT,
      socketValue(fd),
      `put socket fd ${fd} into the empty sockmap`,
    );
  }

  /**
   * Empties the sockmap, so that the standby socket takes the steered
   * connections. The caller checks first that its own socket is there. A
   * socket that another process put there in between is removed too, and
   * that process takes steering back at its next check.
   */
  removeSocket(): void {
    mapDelete(this.#fds.sockets, SLOT, "remove the proxy socket");
  }

  /**
   * Returns the cookie of the standby socket, or `undefined` when there is
   * none or the pinned state predates the standby map.
   */
  standbyCookie(): bigint | undefined {
    if (!this.has("standby")) return undefined;
    return this.#readSlot(this.#fds.standby, "look up the standby socket");
  }

  /**
   * Makes listening socket `fd` the standby socket, which takes steered
   * connections while the sockmap is empty. Does nothing when the pinned
   * state predates the standby map.
   */
  setStandby(fd: number): void {
    if (!this.has("standby")) return;
    mapUpdate(
      this.#fds.standby,
      SLOT,
      socketValue(fd),
      `make socket fd ${fd} the standby socket`,
    );
  }

  /** Empties the standby slot. */
  removeStandby(): void {
    if (!this.has("standby")) return;
    mapDelete(this.#fds.standby, SLOT, "remove the standby socket");
  }

  /** Returns the cookie in the one slot of sockmap `fd`, if any. */
  #readSlot(fd: number, operation: string): bigint | undefined {
    const value = new Uint8Array(8);
    if (!mapLookup(fd, SLOT, value, operation)) return undefined;
    return new DataView(value.buffer).getBigUint64(0, HOST_LITTLE_ENDIAN);
  }

  /** Reads every counter, summed over all CPUs. */
  readCounters(): Counters {
    const cpus = possibleCpus();
    const counters = {} as Counters;
    for (const [index, name] of COUNTER_NAMES.entries()) {
      const key = new Uint8Array(new Uint32Array([index]).buffer);
      const values = new BigUint64Array(cpus);
      mapLookup(
        this.#fds.counters,
        key,
        new Uint8Array(values.buffer),
        `read counter "${name}"`,
      );
      counters[name] = values.reduce((sum, value) => sum + value, 0n);
    }
    return counters;
  }

  /** Closes every map descriptor; the maps live on while pinned. */
  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const name of MAP_NAMES) {
      if (this.#fds[name] >= 0) closeFd(this.#fds[name]);
    }
  }

  #prefixFd(family: 4 | 6): number {
    return family === 4 ? this.#fds.ipv4_prefixes : this.#fds.ipv6_prefixes;
  }

  #readFamily(family: 4 | 6): Prefix[] {
    const name = family === 4 ? "ipv4_prefixes" : "ipv6_prefixes";
    const keys = mapKeys(
      this.#fds[name],
      MAP_LAYOUTS[name].keySize,
      MAP_LAYOUTS[name].maxEntries,
      `list steered IPv${family} prefixes`,
    );
    return keys.map((key) => ({
      family,
      length: new DataView(key.buffer).getUint32(0, HOST_LITTLE_ENDIAN),
      address: key.slice(4),
    }));
  }
}

/** Encodes an LPM trie key: `u32 prefixlen` in host order, then the address. */
export function prefixKey(prefix: Prefix): Uint8Array {
  const key = new Uint8Array(4 + prefix.address.length);
  new DataView(key.buffer).setUint32(0, prefix.length, HOST_LITTLE_ENDIAN);
  key.set(prefix.address, 4);
  return key;
}

function portOf(key: Uint8Array): number {
  return new DataView(key.buffer).getUint16(0, HOST_LITTLE_ENDIAN);
}

function checkLayout(name: MapName, fd: number): void {
  const info = new Uint8Array(MAP_INFO_SIZE);
  objInfo(fd, info, `read information of BPF map "${name}"`);
  const mismatch = layoutMismatch(name, info);
  if (mismatch !== undefined) {
    throw new Error(`Cannot use BPF map "${name}": ${mismatch}`);
  }
}

/** Encodes socket descriptor `fd` as a sockmap value. */
function socketValue(fd: number): Uint8Array {
  const value = new Uint8Array(8);
  new DataView(value.buffer).setBigUint64(0, BigInt(fd), HOST_LITTLE_ENDIAN);
  return value;
}
