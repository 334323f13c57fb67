/**
 * Names and layouts of the maps in `ebpf/steer.bpf.c`. Keep both files in
 * step: loaded and pinned maps are checked against these layouts.
 *
 * @module
 */

/** Whether this host stores integers little-endian, as BPF maps then do. */
export const HOST_LITTLE_ENDIAN =
  new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Name of the sk_lookup program in the object. */
export const PROGRAM_NAME = "steer";

/** `enum bpf_map_type` values used by the program. */
const BPF_MAP_TYPE_HASH = 1;
const BPF_MAP_TYPE_PERCPU_ARRAY = 6;
const BPF_MAP_TYPE_LPM_TRIE = 11;
const BPF_MAP_TYPE_SOCKMAP = 15;

/** Type and sizes of one map, as `struct bpf_map_info` reports them. */
export interface MapLayout {
  type: number;
  keySize: number;
  valueSize: number;
  maxEntries: number;
}

/** Maximum number of prefixes per address family (`MAX_PREFIXES`). */
export const MAX_PREFIXES = 4096;

/** Names of the counters, in the order of `enum counter`. */
export const COUNTER_NAMES = [
  "lookups",
  "steered",
  "noSocket",
  "assignErrors",
] as const;

/** Every map of the program, by name. */
export const MAP_LAYOUTS = {
  ports: {
    type: BPF_MAP_TYPE_HASH,
    keySize: 2,
    valueSize: 1,
    maxEntries: 65536,
  },
  ipv4_prefixes: {
    type: BPF_MAP_TYPE_LPM_TRIE,
    keySize: 4 + 4,
    valueSize: 1,
    maxEntries: MAX_PREFIXES,
  },
  ipv6_prefixes: {
    type: BPF_MAP_TYPE_LPM_TRIE,
    keySize: 4 + 16,
    valueSize: 1,
    maxEntries: MAX_PREFIXES,
  },
  sockets: {
    type: BPF_MAP_TYPE_SOCKMAP,
    keySize: 4,
    valueSize: 8,
    maxEntries: 1,
  },
  standby: {
    type: BPF_MAP_TYPE_SOCKMAP,
    keySize: 4,
    valueSize: 8,
    maxEntries: 1,
  },
  counters: {
    type: BPF_MAP_TYPE_PERCPU_ARRAY,
    keySize: 4,
    valueSize: 8,
    maxEntries: COUNTER_NAMES.length,
  },
} as const satisfies Record<string, MapLayout>;

/** Name of a map of the program. */
export type MapName = keyof typeof MAP_LAYOUTS;

/** Every map name, in a fixed order. */
export const MAP_NAMES = Object.keys(MAP_LAYOUTS) as MapName[];

/**
 * Maps that state pinned by an earlier build can lack. Opening such state
 * leaves them out, and the next process that takes it over creates and
 * pins them.
 */
export const ADDED_MAPS: ReadonlySet<MapName> = new Set(["standby"]);

/**
 * Checks a map's `struct bpf_map_info` against its layout.
 *
 * @returns a description of the first difference, or `undefined`
 */
export function layoutMismatch(
  name: MapName,
  info: Uint8Array,
): string | undefined {
  const view = new DataView(info.buffer, info.byteOffset, info.byteLength);
  const want = MAP_LAYOUTS[name];
  // struct bpf_map_info { u32 type, id, key_size, value_size, max_entries; }
  const got = {
    type: view.getUint32(0, HOST_LITTLE_ENDIAN),
    keySize: view.getUint32(8, HOST_LITTLE_ENDIAN),
    valueSize: view.getUint32(12, HOST_LITTLE_ENDIAN),
    maxEntries: view.getUint32(16, HOST_LITTLE_ENDIAN),
  };
  for (const field of ["type", "keySize", "valueSize", "maxEntries"] as const) {
    if (got[field] !== want[field]) {
      return `map "${name}" has ${field} ${got[field]}, expected ${
        want[field]
      }`;
    }
  }
  return undefined;
}

/** Default directory for pins; one subdirectory per network namespace. */
export const DEFAULT_PIN_ROOT = "/sys/fs/bpf/anyport";
