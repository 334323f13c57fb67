import { OsError } from "../ffi/libc.ts";

/**
 * errno values (Linux) that mean this process or the machine ran out of a
 * resource: descriptors (EMFILE, ENFILE), memory (ENOMEM), socket buffers
 * (ENOBUFS) or local ports (EADDRNOTAVAIL). No peer causes them.
 */
const RESOURCE_ERRNOS = new Set([24, 23, 12, 105, 99]);

/**
 * Returns the errno of an error: the `errno` field of an error from libc, or
 * the number in a Deno error message ("... (os error 24)").
 */
export function osErrno(error: unknown): number | undefined {
  if (error instanceof OsError) return error.errno;
  const message = error instanceof Error ? error.message : String(error);
  const match = /\(os error (\d+)\)/.exec(message);
  return match === null ? undefined : Number(match[1]);
}

/**
 * Returns the message of an error from a Deno file call without the call
 * and path that Deno appends (": readfile '/etc/anyport/config.json'"), for
 * a message that names the path itself.
 */
export function withoutCall(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  return message.replace(/: [a-z]+ '[^']*'$/, "");
}

/** Returns whether `error` means the proxy ran out of a local resource. */
export function isResourceExhausted(error: unknown): boolean {
  const errno = osErrno(error);
  return errno !== undefined && isResourceErrno(errno);
}

/** Returns whether an `errno` value means a local resource ran out. */
export function isResourceErrno(errno: number): boolean {
  return RESOURCE_ERRNOS.has(errno);
}
