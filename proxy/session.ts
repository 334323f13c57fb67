import type { App } from "./app.ts";
import type { EventLoop, Watched } from "./event_loop.ts";
import type { Pipe } from "./pipe.ts";
import type { SocketAddress } from "./sockaddr.ts";
import { DialControl } from "./dial.ts";
import { closeWithReset, net, SHUT_WR } from "../ffi/net.ts";

/** One accepted client connection, from accept until both sides close. */
export class Session {
  /** The client socket, watched by the loop; the pipe takes it over. */
  readonly client: Watched;
  readonly peer: SocketAddress | undefined;
  readonly port: number;
  readonly app: App;
  /**
   * Names of the apps of this proxy that the connection went through before
   * it came back in as this session. It comes back when a target is one of
   * the proxy's own ports. Empty for a connection from outside.
   */
  readonly chain: readonly string[];
  /** Original destination, where the frontend reports it (BPF mode). */
  readonly local: SocketAddress | undefined;
  readonly started = Date.now();
  /** Set once a target accepted the connection and bytes flow. */
  pipe: Pipe | undefined;
  /** Position in the proxy's open sessions, as {@linkcode SlotSet} keeps them. */
  slot = -1;
  aborted = false;
  /** The client reset its connection before a target accepted. */
  clientReset = false;
  /** Cancels the connect to a target while there is no pipe yet. */
  readonly dial = new DialControl();
  readonly #loop: EventLoop;
  #clientClosed = false;
  #finished = false;
  /** Resolvers of `done` promises, created only when a drain requests one. */
  #waiters: (() => void)[] | undefined;

  constructor(
    loop: EventLoop,
    client: Watched,
    peer: SocketAddress | undefined,
    port: number,
    app: App,
    chain: readonly string[],
    local?: SocketAddress,
  ) {
    this.#loop = loop;
    this.client = client;
    this.peer = peer;
    this.port = port;
    this.app = app;
    this.chain = chain;
    this.local = local;
  }

  /** Settles when the session has closed both connections. */
  get done(): Promise<void> {
    if (this.#finished) return Promise.resolve();
    return new Promise((resolve) => (this.#waiters ??= []).push(resolve));
  }

  /** Client address as `host:port`, for logs. */
  get clientLabel(): string {
    return this.peer?.label ?? "-";
  }

  /**
   * Resets the session now: both connections, or the client and the connect
   * in progress.
   */
  abort(): void {
    this.aborted = true;
    if (this.pipe !== undefined) {
      this.pipe.abort();
      return;
    }
    // The reset goes first: cancelling ends the session at once, and its
    // end would otherwise close the client with a FIN.
    if (!this.#clientClosed) {
      this.#clientClosed = true;
      this.#loop.release(this.client.fd);
      closeWithReset(this.client.fd);
    }
    this.dial.cancel();
  }

  /**
   * Ends a session whose client reset, with no bytes sent, before a target
   * accepted. The connect in progress is cancelled, so its socket does not
   * stay open until the connect timeout.
   */
  resetByClient(): void {
    if (this.pipe !== undefined || this.#clientClosed) return;
    this.clientReset = true;
    this.#clientClosed = true;
    this.#loop.close(this.client.fd);
    this.dial.cancel();
  }

  /** Marks the session closed; called once on every path. */
  finish(): void {
    if (this.pipe === undefined) this.#closeClient();
    this.#finished = true;
    for (const resolve of this.#waiters ?? []) resolve();
  }

  #closeClient() {
    if (this.#clientClosed) return;
    this.#clientClosed = true;
    // The FIN goes out before close(2). Closing a socket with unread bytes
    // sends a reset, and the client then reads a clean end before it.
    net().shutdown(this.client.fd, SHUT_WR);
    this.#loop.close(this.client.fd);
  }
}
