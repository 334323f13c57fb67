import type { Logger } from "@logtape/logtape";
import { strerror } from "../ffi/libc.ts";
import {
  EAGAIN,
  EINTR,
  lastErrno,
  net,
  setNoDelay,
  SOCK_CLOEXEC,
  SOCK_NONBLOCK,
} from "../ffi/net.ts";
import type { EventLoop } from "./event_loop.ts";
import { isResourceErrno } from "./os_error.ts";
import { LogRateLimiter, withSuppressed } from "./rate_limit.ts";
import {
  decodeSockAddr,
  SOCKADDR_SIZE,
  type SocketAddress,
} from "./sockaddr.ts";

/**
 * Pause after an accept error that means a local resource ran out, such as
 * EMFILE, before accepting again, in ms. Accepting at once would fail again
 * in a busy loop.
 */
const RESOURCE_PAUSE_MS = 100;

/**
 * Length of each listener's queue of connections not yet accepted. Deno
 * listens with 511 (seen with `ss -ltn`), and a burst of 1,500 connects
 * overflowed it, so the kernel reset some clients and fell back to SYN
 * cookies for others. The kernel caps it at `net.core.somaxconn`, 4096 by
 * default.
 */
export const LISTEN_BACKLOG = 4096;

/** Connections taken from the backlog per event; the rest come next turn. */
const ACCEPTS_PER_TURN = 64;

/**
 * errno values of `accept4(2)` that concern one connection only, such as a
 * client that reset before the accept: the next accept goes on at once.
 */
const CONNECTION_ERRNOS = new Set([
  103, // ECONNABORTED
  71, // EPROTO
  107, // ENOTCONN
  104, // ECONNRESET
  EINTR,
]);

const limiter = new LogRateLimiter();
const address = new Uint8Array(SOCKADDR_SIZE);
const addressLength = new Uint32Array(1);
const addressLengthBytes = new Uint8Array(addressLength.buffer);

/** Called with each accepted socket, which the callee then owns. */
export type AcceptHandler = (
  fd: number,
  peer: SocketAddress | undefined,
) => void;

/**
 * Accepts connections on a listening socket through the event loop, with
 * `accept4(2)`, so the accepted sockets come as non-blocking descriptors
 * with Nagle's algorithm off.
 *
 * Accept errors are logged, rate-limited, and never stop accepting. Errors
 * of one connection are skipped at once. Running out of descriptors or
 * memory (EMFILE, ENFILE, ENOMEM, ENOBUFS) stops watching the listener for
 * a short pause, so the loop does not spin while nothing can be accepted.
 * The kernel keeps new connections in the backlog meanwhile.
 */
export class Acceptor {
  readonly #loop: EventLoop;
  readonly #fd: number;
  readonly #onAccept: AcceptHandler;
  readonly #log: Logger;
  readonly #label: string;
  /** Timer that ends the pause after a resource error. */
  #resourcePause: ReturnType<typeof setTimeout> | undefined;
  /** Whether {@linkcode pause} stopped accepting. */
  #paused = false;
  #closed = false;

  /**
   * @param fd the listening socket; the caller keeps owning it
   * @param label names the listener in logs, such as `port 80`
   * @throws {OsError} when the loop cannot watch `fd`
   */
  constructor(
    loop: EventLoop,
    fd: number,
    onAccept: AcceptHandler,
    log: Logger,
    label: string,
  ) {
    this.#loop = loop;
    this.#fd = fd;
    this.#onAccept = onAccept;
    this.#log = log;
    this.#label = label;
    // Accepted sockets inherit TCP_NODELAY from the listener, which spares
    // one system call per connection.
    setNoDelay(fd);
    // listen(2) on a listening socket only changes its backlog.
    if (net().listen(fd, LISTEN_BACKLOG) < 0) {
      log.warn(
        "Cannot raise the listen backlog of {socket} to {backlog}: {error}. Bursts of connects beyond the old backlog may be reset",
        {
          socket: label,
          backlog: LISTEN_BACKLOG,
          error: strerror(lastErrno()),
        },
      );
    }
    loop.watchListener(fd, this.#onReady);
  }

  /** Stops accepting; call it before the listener closes. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#resourcePause);
    this.#loop.unwatch(this.#fd);
  }

  /**
   * Stops accepting until {@linkcode resume}. The listener stays open, and
   * the kernel keeps new connections in its backlog meanwhile.
   */
  pause(): void {
    if (this.#closed || this.#paused) return;
    this.#paused = true;
    this.#loop.unwatch(this.#fd);
  }

  /** Accepts again after {@linkcode pause}. */
  resume(): void {
    if (this.#closed || !this.#paused) return;
    this.#paused = false;
    if (this.#resourcePause === undefined) {
      this.#loop.watchListener(this.#fd, this.#onReady);
    }
  }

  #onReady = (): void => {
    const symbols = net();
    let checked = false;
    for (let i = 0; i < ACCEPTS_PER_TURN; i++) {
      addressLength[0] = SOCKADDR_SIZE;
      const fd = symbols.accept4(
        this.#fd,
        address,
        addressLengthBytes,
        SOCK_NONBLOCK | SOCK_CLOEXEC,
      );
      if (fd < 0) {
        const code = lastErrno();
        if (code === EAGAIN) return;
        if (CONNECTION_ERRNOS.has(code)) continue;
        // errno may not be this call's own (see recvErrno in
        // ffi/socket_errno.ts). So an error counts only when a second accept
        // fails too, and an EAGAIN that read wrong ends the turn there.
        if (!checked) {
          checked = true;
          continue;
        }
        this.#failed(code);
        return;
      }
      this.#onAccept(fd, decodeSockAddr(address));
      // The handler may have paused accepting, at a connection limit.
      if (this.#paused || this.#closed) return;
    }
  };

  #failed(code: number) {
    const suppressed = limiter.allow(`accepts on ${this.#label}`, Date.now());
    if (suppressed >= 0) {
      this.#log.error(
        withSuppressed("Accept failed on {socket}: {error}", suppressed),
        { socket: this.#label, error: strerror(code), errno: code, suppressed },
      );
    }
    if (!isResourceErrno(code)) return;
    // Level-triggered, the listener would be reported again at once.
    this.#loop.unwatch(this.#fd);
    this.#resourcePause = setTimeout(() => {
      this.#resourcePause = undefined;
      if (!this.#closed && !this.#paused) {
        this.#loop.watchListener(this.#fd, this.#onReady);
      }
    }, RESOURCE_PAUSE_MS);
  }
}
