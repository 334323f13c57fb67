import { connFd, resetConn } from "./reset.ts";

/**
 * Size of the buffer each direction starts with, in bytes. Idle connections
 * keep a read pending on this buffer, so it sets most of their memory.
 */
export const SMALL_BUFFER_SIZE = 1024;

/** Size of the pooled buffers that a direction moves to while data streams. */
export const LARGE_BUFFER_SIZE = 64 * 1024;

/** Maximum number of free large buffers kept for reuse. */
const POOL_LIMIT = 64;

const pool: Uint8Array<ArrayBuffer>[] = [];

/** Outcome of a finished pipe. */
export interface PipeResult {
  /** Bytes copied from client to target. */
  sent: number;
  /** Bytes copied from target to client. */
  received: number;
  /**
   * End state of the pipe. `"closed"`: both sides finished cleanly.
   * `"client reset"`/`"target reset"`: one side sent a reset, and the other
   * was reset in turn. `"client error"`/`"target error"`: another socket
   * error, also passed on as a reset. `"idle"`: the idle timeout closed it.
   * `"aborted"`: the drain ended.
   */
  end:
    | "closed"
    | "client reset"
    | "target reset"
    | "client error"
    | "target error"
    | "idle"
    | "aborted";
}

type Side = "client" | "target";

/**
 * Bidirectional copy between a client and a target connection.
 *
 * Each direction reads into its own buffer and writes it out in full before
 * reading again, so a slow reader holds back its writer (backpressure) and
 * a connection never buffers more than one buffer per direction. A read that
 * fills the small buffer moves the direction to a large pooled buffer. A read
 * that uses less than a quarter of that moves it back. So streaming gets
 * large reads, while idle connections keep only small buffers. When one
 * side finishes sending, the other side's write half is closed, and the
 * opposite direction goes on. When one side resets, the other is reset too.
 * Both connections are closed once `done` settles, on every path.
 */
export class Pipe {
  readonly client: Deno.TcpConn;
  readonly target: Deno.TcpConn;
  sent = 0;
  received = 0;
  /** Time of the last byte in either direction, from `Date.now()`. */
  lastActive = Date.now();
  readonly done: Promise<PipeResult>;
  #end: PipeResult["end"] | undefined;
  #closed = false;
  /** Directions that reached the end of their source. */
  #ended = 0;

  constructor(client: Deno.TcpConn, target: Deno.TcpConn) {
    this.client = client;
    this.target = target;
    this.done = this.#run();
  }

  /**
   * Closes both connections now with a FIN, at idle timeout. Bytes already
   * handed to the kernel are still delivered before the FIN.
   */
  expire(): void {
    if (this.#closed) return;
    this.#end ??= "idle";
    this.#close();
  }

  /** Resets both connections now, at the end of a drain. */
  abort(): void {
    if (this.#closed) return;
    this.#end ??= "aborted";
    // Resets, not FINs, so neither peer takes a cut stream for a whole one.
    const clientFd = connFd(this.client);
    resetConn(this.client);
    resetConn(this.target, clientFd);
    this.#close();
  }

  async #run(): Promise<PipeResult> {
    await Promise.all([
      this.#copy(this.client, this.target, "client"),
      this.#copy(this.target, this.client, "target"),
    ]);
    this.#close();
    return {
      sent: this.sent,
      received: this.received,
      end: this.#end ?? "closed",
    };
  }

  /** Copies `src` to `dst` until `src` ends, then half-closes `dst`. */
  async #copy(src: Deno.TcpConn, dst: Deno.TcpConn, from: Side) {
    const small = new Uint8Array(SMALL_BUFFER_SIZE);
    let buffer = small;
    try {
      for (;;) {
        let n: number | null;
        try {
          n = await src.read(buffer);
        } catch (error) {
          this.#fail(from, error);
          return;
        }
        if (n === null) break;
        if (from === "client") this.sent += n;
        else this.received += n;
        this.lastActive = Date.now();
        try {
          await writeAll(dst, buffer.subarray(0, n));
        } catch (error) {
          this.#fail(from === "client" ? "target" : "client", error);
          return;
        }
        // A slow reader that keeps taking bytes is not idle.
        this.lastActive = Date.now();
        if (buffer === small) {
          if (n === small.length) {
            buffer = pool.pop() ?? new Uint8Array(LARGE_BUFFER_SIZE);
          }
        } else if (n < LARGE_BUFFER_SIZE / 4) {
          releaseLarge(buffer);
          buffer = small;
        }
      }
    } finally {
      // No read is pending here, so the kernel no longer writes into it.
      if (buffer !== small) releaseLarge(buffer);
    }
    if (this.#closed) return;
    // When the other direction has ended already, close() follows at once
    // and sends the FIN itself, so a separate shutdown would be a wasted
    // system call on every connection.
    if (++this.#ended === 2) return;
    try {
      await dst.closeWrite();
    } catch (error) {
      // The peer may have gone away: treat it like a failed write.
      this.#fail(from === "client" ? "target" : "client", error);
    }
  }

  /**
   * Ends the pipe after an error on `side` and resets the other side. Any
   * error counts, not only a reset, because a FIN would tell the peer that
   * the stream ended complete.
   */
  #fail(side: Side, error: unknown) {
    if (this.#closed) return;
    this.#end ??= isReset(error) ? `${side} reset` : `${side} error`;
    if (side === "client") resetConn(this.target, connFd(this.client));
    else resetConn(this.client);
    this.#close();
  }

  #close() {
    if (this.#closed) return;
    this.#closed = true;
    for (const conn of [this.client, this.target]) {
      try {
        conn.close();
      } catch {
        // Already closed, for example by resetConn().
      }
    }
  }
}

function releaseLarge(buffer: Uint8Array<ArrayBuffer>) {
  if (pool.length < POOL_LIMIT) pool.push(buffer);
}

async function writeAll(conn: Deno.TcpConn, data: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < data.length) {
    offset += await conn.write(data.subarray(offset));
  }
}

function isReset(error: unknown): boolean {
  return error instanceof Deno.errors.ConnectionReset ||
    error instanceof Deno.errors.BrokenPipe ||
    error instanceof Deno.errors.ConnectionAborted;
}
