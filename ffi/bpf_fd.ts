/**
 * Operations on BPF descriptors: map elements, pins, links and object
 * information. Each failure throws a {@linkcode LibbpfError} naming the
 * operation.
 *
 * @module
 */

import { cString, ENOENT } from "./libc.ts";
import { check, libbpf, LibbpfError } from "./libbpf.ts";

/** `BPF_ANY`: create an element or update the existing one. */
export const BPF_ANY = 0n;
/** `BPF_NOEXIST`: create an element only if it does not exist. */
const BPF_NOEXIST = 1n;
const EEXIST = 17;

/**
 * Creates or updates the element `key` of map `fd`.
 *
 * @throws {LibbpfError} such as `E2BIG` when the map is full
 */
export function mapUpdate(
  fd: number,
  key: Uint8Array,
  value: Uint8Array,
  operation: string,
): void {
  check(libbpf().bpf_map_update_elem(fd, key, value, BPF_ANY), operation);
}

/**
 * Creates element `key` unless the map has it already (`BPF_NOEXIST`), so
 * of two processes that try at once, only one succeeds.
 *
 * @returns false when the element exists
 * @throws {LibbpfError} when the update fails otherwise
 */
export function mapInsert(
  fd: number,
  key: Uint8Array,
  value: Uint8Array,
  operation: string,
): boolean {
  const result = libbpf().bpf_map_update_elem(fd, key, value, BPF_NOEXIST);
  if (result === -EEXIST) return false;
  check(result, operation);
  return true;
}

/**
 * Copies the value of element `key` into `value`.
 *
 * @returns false when the map has no element `key`
 */
export function mapLookup(
  fd: number,
  key: Uint8Array,
  value: Uint8Array,
  operation: string,
): boolean {
  return absentOnEnoent(
    libbpf().bpf_map_lookup_elem(fd, key, value),
    operation,
  );
}

/**
 * Deletes the element `key`.
 *
 * @returns false when the map had no element `key`
 */
export function mapDelete(
  fd: number,
  key: Uint8Array,
  operation: string,
): boolean {
  return absentOnEnoent(libbpf().bpf_map_delete_elem(fd, key), operation);
}

/**
 * Lists the keys of map `fd`, each `keySize` bytes long. When another
 * process deletes the current key during the walk, the kernel starts over
 * from the first key, so keys may repeat. The walk stops after `maxEntries`
 * keys.
 */
export function mapKeys(
  fd: number,
  keySize: number,
  maxEntries: number,
  operation: string,
): Uint8Array[] {
  const keys: Uint8Array[] = [];
  let key: Uint8Array | null = null;
  while (keys.length < maxEntries) {
    const next: Uint8Array = new Uint8Array(keySize);
    if (
      !absentOnEnoent(libbpf().bpf_map_get_next_key(fd, key, next), operation)
    ) {
      break;
    }
    keys.push(next);
    key = next;
  }
  return keys;
}

/**
 * Creates or updates `count` elements in one system call. `keys` and
 * `values` hold the elements back to back.
 *
 * @throws {LibbpfError} when an element fails; the elements before it are
 * updated
 */
export function mapUpdateBatch(
  fd: number,
  keys: Uint8Array,
  values: Uint8Array,
  count: number,
  operation: string,
): void {
  if (count === 0) return;
  const inout = new Uint32Array([count]);
  check(
    libbpf().bpf_map_update_batch(fd, keys, values, bytesOf(inout), null),
    operation,
  );
}

/**
 * Deletes `count` elements in one system call. `keys` contains the keys
 * back to back.
 *
 * @throws {LibbpfError} `ENOENT` when a key is missing; the keys before it
 * are deleted
 */
export function mapDeleteBatch(
  fd: number,
  keys: Uint8Array,
  count: number,
  operation: string,
): void {
  if (count === 0) return;
  const inout = new Uint32Array([count]);
  check(
    libbpf().bpf_map_delete_batch(fd, keys, bytesOf(inout), null),
    operation,
  );
}

/**
 * Pins the BPF object `fd` (map, program or link) at `path` in a bpffs.
 *
 * @throws {LibbpfError} when the path exists or is not on a bpffs
 */
export function objPin(fd: number, path: string): void {
  check(libbpf().bpf_obj_pin(fd, cString(path)), `pin "${path}"`);
}

/**
 * Opens the BPF object pinned at `path` and returns a new descriptor.
 *
 * @throws {LibbpfError} `ENOENT` when nothing is pinned there
 */
export function objGet(path: string): number {
  return check(libbpf().bpf_obj_get(cString(path)), `open pin "${path}"`);
}

/**
 * Fills `info` with the kernel's `bpf_*_info` struct for descriptor `fd`.
 * The kernel copies at most `info.length` bytes.
 */
export function objInfo(fd: number, info: Uint8Array, operation: string): void {
  const length = new Uint32Array([info.length]);
  check(
    libbpf().bpf_obj_get_info_by_fd(fd, info, bytesOf(length)),
    operation,
  );
}

/** Replaces the program of link `linkFd` with `progFd` in one step. */
export function linkUpdate(linkFd: number, progFd: number): void {
  check(libbpf().bpf_link_update(linkFd, progFd, null), "update BPF link");
}

/**
 * Detaches link `linkFd` even while pins or other processes still refer to
 * it. The link object lives on, defunct, until its last reference closes.
 */
export function linkDetach(linkFd: number): void {
  check(libbpf().bpf_link_detach(linkFd), "detach BPF link");
}

/**
 * Returns the id of the next BPF link after `id` on this host, or
 * `undefined` after the last one.
 *
 * @throws {LibbpfError} such as `EPERM` without `CAP_SYS_ADMIN`
 */
export function nextLinkId(id: number): number | undefined {
  const next = new Uint32Array(1);
  const result = libbpf().bpf_link_get_next_id(id, bytesOf(next));
  if (result === -ENOENT) return undefined;
  check(result, "list BPF links");
  return next[0]!;
}

/**
 * Opens link `id`, returning a new descriptor.
 *
 * @throws {LibbpfError} `ENOENT` when the link is gone, `EPERM` without
 * `CAP_SYS_ADMIN`
 */
export function linkFdById(id: number): number {
  return check(libbpf().bpf_link_get_fd_by_id(id), `open BPF link ${id}`);
}

/** Returns the number of possible CPUs, the length of per-CPU values. */
export function possibleCpus(): number {
  return check(libbpf().libbpf_num_possible_cpus(), "count possible CPUs");
}

function absentOnEnoent(result: number, operation: string): boolean {
  if (result === -ENOENT) return false;
  if (result < 0) throw new LibbpfError(operation, -result);
  return true;
}

function bytesOf(array: Uint32Array): Uint8Array {
  return new Uint8Array(array.buffer);
}
