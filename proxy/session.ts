import type { App } from "./app.ts";
import type { Pipe } from "./pipe.ts";
import { formatAddr } from "./address.ts";

/** One accepted client connection, from accept until both sides close. */
export class Session {
  readonly client: Deno.TcpConn;
  readonly port: number;
  readonly app: App;
  readonly started = Date.now();
  /** Set once a target accepted the connection and bytes flow. */
  pipe: Pipe | undefined;
  aborted = false;
  /** Settles when the session has closed both connections. */
  readonly done: Promise<void>;
  #resolve!: () => void;
  #clientLabel: string | undefined;

  constructor(client: Deno.TcpConn, port: number, app: App) {
    this.client = client;
    this.port = port;
    this.app = app;
    this.done = new Promise((resolve) => this.#resolve = resolve);
  }

  /** Client address as `host:port`, for logs; formatted on first use. */
  get clientLabel(): string {
    this.#clientLabel ??= formatAddr(this.client.remoteAddr);
    return this.#clientLabel;
  }

  /** Closes the session now: both connections, or the client while connecting. */
  abort(): void {
    this.aborted = true;
    if (this.pipe !== undefined) {
      this.pipe.abort();
      return;
    }
    try {
      this.client.close();
    } catch {
      // Already closed.
    }
  }

  /** Marks the session closed; called once on every path. */
  finish(): void {
    if (this.pipe === undefined) {
      try {
        this.client.close();
      } catch {
        // Already closed by abort().
      }
    }
    this.#resolve();
  }
}
