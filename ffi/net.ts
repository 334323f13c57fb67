/**
 * Bindings to the libc socket and epoll calls that anyport's data path makes
 * for every connection: accept, connect, receive, send, shut down and close,
 * plus the epoll calls that wait for them.
 *
 * Every function returns the raw result (a count, a descriptor, or -1) and
 * leaves the error in {@linkcode lastErrno}, so the data path allocates no
 * exception per `EAGAIN`. Lengths are passed as `u32`: both libffi and
 * Deno's fast calls widen them to the 64-bit `size_t` that libc reads.
 *
 * @module
 */

const SYMBOLS = {
  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  /** The same call on a worker thread, for waits that may take long. */
  epoll_wait_off_thread: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  recv: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "u32", "i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  write: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  shutdown: { parameters: ["i32", "i32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  close: { parameters: ["i32"], result: "i32" },
  setsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "u32"],
    result: "i32",
  },
  getsockopt: {
    parameters: ["i32", "i32", "i32", "buffer", "buffer"],
    result: "i32",
  },
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getrlimit: { parameters: ["i32", "buffer"], result: "i32" },
  /** Declared with the one pointer argument that `SIOCOUTQ` takes. */
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  __errno_location: { parameters: [], result: "pointer" },
} as const;

/** errno values that the data path branches on (Linux). */
export const EINTR = 4;
export const EAGAIN = 11;
export const EINPROGRESS = 115;
/** No local port towards the destination is free. */
export const EADDRNOTAVAIL = 99;

/** Returns whether `code` means "try again later" rather than a failure. */
export function isRetry(code: number): boolean {
  return code === EAGAIN || code === EINTR;
}

/** Flags for `socket(2)` and `accept4(2)`. */
export const SOCK_STREAM = 1;
export const SOCK_NONBLOCK = 0o4000;
export const SOCK_CLOEXEC = 0o2000000;

/** `send(2)` flag: return `EPIPE` instead of raising `SIGPIPE`. */
export const MSG_NOSIGNAL = 0x4000;

/** `shutdown(2)` how: stop sending. */
export const SHUT_WR = 1;

/** Flags of `eventfd(2)`. */
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;

/** Socket option levels and names. */
export const SOL_SOCKET = 1;
export const SO_ERROR = 4;
export const SO_LINGER = 13;
export const IPPROTO_TCP = 6;
export const TCP_NODELAY = 1;

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let errnoView: Deno.UnsafePointerView | undefined;

/**
 * Returns the symbols, opening libc on first use.
 *
 * @throws {Error} without the `ffi` permission, with the flag to add
 */
export function net(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  if (library === undefined) {
    try {
      library = Deno.dlopen("libc.so.6", SYMBOLS);
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) {
        throw new Error(
          "anyport moves bytes through libc and needs the ffi permission: " +
            "run it with --allow-ffi (deno task start adds it)",
          { cause: error },
        );
      }
      throw error;
    }
    // errno lives at a fixed address per thread, and every synchronous call
    // runs on the main thread, so one view reads it for the whole process.
    const pointer = library.symbols.__errno_location();
    if (pointer === null) throw new Error("libc returned no errno location");
    errnoView = new Deno.UnsafePointerView(pointer);
  }
  return library.symbols;
}

/**
 * Returns `errno` as the last synchronous call on the main thread left it.
 * Read it right after the call that returned -1.
 */
export function lastErrno(): number {
  return errnoView!.getInt32();
}

/** Size of `struct epoll_event`, which x86_64 packs and aarch64 does not. */
export const EPOLL_EVENT_SIZE = Deno.build.arch === "x86_64" ? 12 : 16;

/** Offset of the `data` field in `struct epoll_event`. */
export const EPOLL_DATA_OFFSET = Deno.build.arch === "x86_64" ? 4 : 8;

const optionOn = new Uint8Array(new Int32Array([1]).buffer);

/** Turns Nagle's algorithm off on `fd`; returns -1 on failure. */
export function setNoDelay(fd: number): number {
  return net().setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, optionOn, 4);
}

const lingerZero = new Uint8Array(new Int32Array([1, 0]).buffer);

/**
 * Closes `fd` with a TCP reset: `SO_LINGER` with a zero timeout makes
 * `close(2)` drop unsent data and send an RST instead of a FIN.
 */
export function closeWithReset(fd: number): void {
  const symbols = net();
  symbols.setsockopt(fd, SOL_SOCKET, SO_LINGER, lingerZero, 8);
  symbols.close(fd);
}

const optionValue = new Uint8Array(4);
const optionView = new DataView(optionValue.buffer);
const optionLength = new Uint32Array(1);

/** Returns the pending error of socket `fd` (`SO_ERROR`), 0 for none. */
export function socketError(fd: number): number {
  optionLength[0] = 4;
  const symbols = net();
  if (
    symbols.getsockopt(fd, SOL_SOCKET, SO_ERROR, optionValue, optionLength) < 0
  ) {
    return lastErrno();
  }
  return optionView.getInt32(0, true);
}

/** Returns the soft limit on open descriptors (`RLIMIT_NOFILE`). */
export function descriptorLimit(): number {
  const limits = new BigUint64Array(2);
  const RLIMIT_NOFILE = 7;
  if (net().getrlimit(RLIMIT_NOFILE, new Uint8Array(limits.buffer)) < 0) {
    return 1024;
  }
  const soft = limits[0]!;
  return Number(soft > 1_048_576n ? 1_048_576n : soft);
}

/** `ioctl(2)` request for the bytes in a socket's send queue. */
const SIOCOUTQ = 0x5411n;

/**
 * Returns the bytes that socket `fd` holds for sending, not yet sent or not
 * yet acknowledged by the peer, or 0 when the call fails.
 */
export function sendQueueBytes(fd: number): number {
  if (net().ioctl(fd, SIOCOUTQ, optionValue) < 0) return 0;
  return optionView.getInt32(0, true);
}

/** `ioctl(2)` request for the bytes in a socket's receive queue (`FIONREAD`). */
const SIOCINQ = 0x541bn;

/**
 * Returns the bytes that socket `fd` received that were not read yet, or 0
 * when the call fails.
 */
export function receiveQueueBytes(fd: number): number {
  if (net().ioctl(fd, SIOCINQ, optionValue) < 0) return 0;
  return optionView.getInt32(0, true);
}
