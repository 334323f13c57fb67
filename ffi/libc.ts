/**
 * Helpers for raw descriptors and socket options outside the data path, and
 * bindings to the libc functions that `net.ts` does not bind: `open`,
 * `readlink`, `access`, `strerror` and `vsnprintf` (for libbpf's messages).
 *
 * The library is opened on first use and stays open for the life of the
 * process, so code that never calls these functions needs no `ffi`
 * permission.
 *
 * @module
 */

import { lastErrno, net } from "./net.ts";

/** Functions beyond the socket calls, which `net.ts` binds. */
const SYMBOLS = {
  open: { parameters: ["buffer", "i32"], result: "i32" },
  readlink: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  access: { parameters: ["buffer", "i32"], result: "i32" },
  flock: { parameters: ["i32", "i32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
  vsnprintf: {
    parameters: ["buffer", "usize", "pointer", "pointer"],
    result: "i32",
  },
} as const;

/** Socket option values from the Linux UAPI (x86_64 and aarch64). */
export const SOL_SOCKET = 1;
export const SO_ACCEPTCONN = 30;
export const SO_COOKIE = 57;

/** `open(2)` flags. */
export const O_RDONLY = 0;
export const O_CLOEXEC = 0o2000000;

/** `ENOENT`, which callers branch on. */
export const ENOENT = 2;

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;

/** Returns the libc symbols, opening the library on first use. */
export function libc(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  library ??= Deno.dlopen("libc.so.6", SYMBOLS);
  return library.symbols;
}

/** Failure of a libc call or a system call, with its `errno`. */
export class OsError extends Error {
  /** The `errno` value, such as 2 for `ENOENT`. */
  readonly errno: number;

  constructor(operation: string, errno: number) {
    super(`${operation}: ${strerror(errno)}`);
    this.name = "OsError";
    this.errno = errno;
  }
}

/**
 * Returns the calling thread's `errno`.
 *
 * Read it right after the failed call with no `await` in between, because
 * any other call on the same thread may overwrite it.
 */
export function errno(): number {
  // Both libraries run on the main thread, which has one errno.
  net();
  return lastErrno();
}

/** Returns the message for an `errno` value, such as "Permission denied". */
export function strerror(code: number): string {
  const pointer = libc().strerror(code);
  if (pointer === null) return `error ${code}`;
  return Deno.UnsafePointerView.getCString(pointer);
}

/** Encodes a string as a NUL-terminated C string. */
export function cString(text: string): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(`${text}\0`);
}

/**
 * Opens `path` read-only with `O_CLOEXEC` and returns the descriptor, for
 * files that Deno cannot hand out as a descriptor, such as namespaces.
 *
 * @throws {OsError} when `open(2)` fails
 */
export function openReadOnly(path: string): number {
  const fd = libc().open(cString(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw new OsError(`open "${path}"`, errno());
  return fd;
}

/**
 * Returns the first 4 KiB of a file as text, or `undefined` when it cannot
 * be read. Meant for `/proc/sys` files, which Deno reads only with
 * `--allow-all`, while `--allow-ffi` covers this libc call.
 */
export function readSmallFile(path: string): string | undefined {
  const fd = libc().open(cString(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return undefined;
  const buffer = new Uint8Array(4096);
  const length = net().read(fd, buffer, buffer.length);
  net().close(fd);
  if (length < 0) return undefined;
  return new TextDecoder().decode(buffer.subarray(0, length));
}

/**
 * Returns the target of the symbolic link `path`, or `undefined` when it
 * cannot be read. Through libc, so that reading `/proc/self` does not need
 * Deno's `--allow-all`.
 */
export function readLink(path: string): string | undefined {
  const buffer = new Uint8Array(4096);
  const length = Number(
    libc().readlink(cString(path), buffer, BigInt(buffer.length)),
  );
  if (length < 0) return undefined;
  return new TextDecoder().decode(buffer.subarray(0, length));
}

/**
 * Returns whether `path` exists, through libc, so that paths under `/sys`
 * need no Deno permission.
 */
export function pathExists(path: string): boolean {
  const F_OK = 0;
  return libc().access(cString(path), F_OK) === 0;
}

const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;
const EWOULDBLOCK = 11;

/**
 * Takes an exclusive `flock(2)` on `fd` without waiting. Returns false when
 * another open file has it locked.
 *
 * @throws {OsError} when `flock(2)` fails for another reason
 */
export function tryLockExclusive(fd: number): boolean {
  if (libc().flock(fd, LOCK_EX | LOCK_NB) === 0) return true;
  const code = errno();
  if (code === EWOULDBLOCK) return false;
  throw new OsError(`flock fd ${fd}`, code);
}

/** Releases a lock from {@linkcode tryLockExclusive}. */
export function unlock(fd: number): void {
  libc().flock(fd, LOCK_UN);
}

/** Closes a descriptor from {@linkcode openReadOnly} or libbpf. */
export function closeFd(fd: number): void {
  if (net().close(fd) < 0) throw new OsError(`close fd ${fd}`, errno());
}

/**
 * Reads an integer socket option of `size` bytes (4 or 8).
 *
 * @throws {OsError} when `getsockopt(2)` fails
 */
export function getSockOptInt(
  fd: number,
  level: number,
  name: number,
  size: 4 | 8,
): bigint {
  const value = new Uint8Array(size);
  const length = new Uint32Array([size]);
  if (net().getsockopt(fd, level, name, value, length) < 0) {
    throw new OsError(`getsockopt fd ${fd} option ${name}`, errno());
  }
  const view = new DataView(value.buffer);
  return size === 4
    ? BigInt(view.getInt32(0, true))
    : view.getBigUint64(0, true);
}
