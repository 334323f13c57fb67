import {
  closeWithReset,
  lastErrno,
  MSG_NOSIGNAL,
  net,
  receiveQueueBytes,
  sendQueueBytes,
  SHUT_WR,
  socketError,
} from "../ffi/net.ts";
import {
  type Deadline,
  type EventLoop,
  isRetry,
  type Watched,
} from "./event_loop.ts";
import { type QueuedSend, type SendBatch, sendBatchOf } from "./send_batch.ts";
import { recvErrno, sendErrno } from "../ffi/socket_errno.ts";

/**
 * Size of the buffers that pipes read into, in bytes: the loop's send batch,
 * or one shared buffer when the batch has no free buffer. Bytes are sent on
 * by the end of the batch, so a buffer is free again for the next batch.
 *
 * It stays below the loopback MSS (65,483 bytes with TCP timestamps), so a
 * full read leaves as one segment towards a target on the same host. With
 * 64 KiB, every full send split into a full segment and a 53-byte one, and
 * one iperf3 connection through anyport on `lo` moved 9.5-13 Gbit/s instead
 * of 22-26 (2-core Xeon VM, Linux 6.18).
 */
export const READ_BUFFER_SIZE = 60 * 1024;

/**
 * Reads one direction makes per turn before it lets other connections run;
 * the rest waits for the end of the batch.
 */
const READS_PER_TURN = 4;

/**
 * Maximum time to deliver the bytes that a side sent before it failed, in
 * ms, before the other side is reset anyway.
 */
export const SALVAGE_LIMIT_MS = 2000;

/** Interval of checks whether the other side took those bytes, in ms. */
const SALVAGE_POLL_MS = 5;

const ECONNRESET = 104;
const EPIPE = 32;
const ECONNABORTED = 103;

const shared = new Uint8Array(READ_BUFFER_SIZE);

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

/** One direction of a pipe: bytes from `src` to `dst`. */
class Direction implements QueuedSend {
  readonly from: Side;
  readonly src: Watched;
  readonly dst: Watched;
  /** Bytes read from `src` that `dst` did not take yet. */
  pending: Uint8Array | null = null;
  /**
   * Buffer of the send batch whose first `queuedLength` bytes go to `dst` at
   * the end of the batch; reads wait for that send.
   */
  queued: Uint8Array | null = null;
  queuedLength = 0;
  /** `src` sent its FIN. */
  eof = false;
  /** The FIN went on to `dst`, or the pipe closed. */
  finished = false;
  /** A turn is queued with `EventLoop.defer`; events wait for it. */
  deferred = false;

  readonly #send: (d: Direction) => void;

  constructor(
    from: Side,
    src: Watched,
    dst: Watched,
    send: (d: Direction) => void,
  ) {
    this.from = from;
    this.src = src;
    this.dst = dst;
    this.#send = send;
  }

  sendQueued(): void {
    this.#send(this);
  }
}

/** `#queueSample()` of a pipe with nothing queued anywhere. */
const EMPTY_QUEUES = "0,0,0,0,0,0";

/**
 * Bidirectional copy between a client and a target socket, driven by the
 * event loop.
 *
 * A readable socket is read into a buffer of the loop's send batch, and the
 * bytes are sent on at the end of the batch, or at once when the read filled
 * the buffer. When the other socket takes only part of them, the rest is
 * kept and that direction stops reading until the socket drains. So a slow
 * reader holds back its writer (backpressure), and a connection never keeps
 * more than one read of data per direction. An idle connection keeps no
 * buffer at all. When one side finishes sending, the other side's write half
 * is shut down and the opposite direction goes on. When one side resets or
 * fails, the other is reset. Both sockets are closed before `onDone` runs.
 */
export class Pipe {
  readonly #loop: EventLoop;
  readonly #batch: SendBatch;
  readonly #client: Watched;
  readonly #target: Watched;
  readonly #up: Direction;
  readonly #down: Direction;
  sent = 0;
  received = 0;
  /** Time of the last byte in either direction, from `Date.now()`. */
  lastActive: number;
  readonly #onDone: (result: PipeResult) => void;
  #end: PipeResult["end"] | undefined;
  #closed = false;
  /** Directions that passed their FIN on. */
  #ended = 0;
  /**
   * Queue sizes at the last idle check, as `#queueSample()` returns them, or
   * `undefined` when the pipe read or sent since.
   */
  #lastQueued: string | undefined;
  /**
   * After one side failed: the direction from it to the other side, whose
   * bytes are still delivered before the other side is reset.
   */
  #salvage: Direction | undefined;
  #salvageUntil = 0;
  #salvageCheck: Deadline | undefined;

  /**
   * Takes over two watched sockets: once started, the pipe handles their
   * events and closes them.
   *
   * @param onDone called once, when both sockets are closed
   */
  constructor(
    loop: EventLoop,
    client: Watched,
    target: Watched,
    onDone: (result: PipeResult) => void,
  ) {
    this.#loop = loop;
    this.#batch = sendBatchOf(loop, READ_BUFFER_SIZE);
    this.#client = client;
    this.#target = target;
    this.#up = new Direction("client", client, target, this.#sendQueued);
    this.#down = new Direction("target", target, client, this.#sendQueued);
    this.lastActive = loop.now;
    this.#onDone = onDone;
  }

  /**
   * Starts copying. `onDone` may run before this returns, when both sides
   * ended already.
   */
  start(): void {
    this.#client.handler = this.#onReady;
    this.#target.handler = this.#onReady;
    // Readiness seen before the pipe took over is in the flags already.
    this.#onReady(this.#client);
    this.#onReady(this.#target);
  }

  /** Whether one direction has ended with a FIN and the other goes on. */
  get halfClosed(): boolean {
    return this.#ended === 1;
  }

  /**
   * Checks for the idle timeout a pipe that made no read or send for at
   * least one check interval. Bytes can move while the proxy neither reads
   * nor sends: a slow reader drains a send queue, and a peer keeps filling a
   * receive queue that the proxy does not read because the other side is
   * full. So the queues are sampled on each call until they are all empty,
   * and a change counts as activity. Once `lastActive` is older than
   * `cutoff`, the pipe closes: with a FIN when every byte was delivered, and
   * with a reset when bytes are still queued, so a peer never takes a cut
   * stream for a whole one.
   *
   * @param cutoff the idle check's `now` minus the idle timeout
   * @returns whether the pipe closed
   */
  checkIdle(now: number, cutoff: number): boolean {
    if (this.#closed) return true;
    // Delivery after a failure ends within its own limit.
    if (this.#salvage !== undefined) return false;
    // Empty queues stay empty until the next read or send.
    if (this.#lastQueued !== EMPTY_QUEUES) {
      const sample = this.#queueSample();
      if (this.#lastQueued !== undefined && sample !== this.#lastQueued) {
        this.lastActive = now;
      }
      this.#lastQueued = sample;
    }
    if (this.lastActive >= cutoff) return false;
    this.#end ??= "idle";
    if (this.#lastQueued !== EMPTY_QUEUES) {
      this.#resetBoth();
      return true;
    }
    this.#close();
    return true;
  }

  /**
   * Returns the sizes of the kernel's send and receive queues of both
   * sockets and of the pending bytes, joined into one string. Each is kept
   * apart, so that bytes leaving one queue while as many enter another
   * still show as a change.
   */
  #queueSample(): string {
    return [
      sendQueueBytes(this.#client.fd),
      sendQueueBytes(this.#target.fd),
      receiveQueueBytes(this.#client.fd),
      receiveQueueBytes(this.#target.fd),
      this.#up.pending?.length ?? 0,
      this.#down.pending?.length ?? 0,
    ].join(",");
  }

  /** Resets both connections now, at the end of a drain. */
  abort(): void {
    if (this.#closed) return;
    if (this.#salvage !== undefined) {
      this.#endSalvage();
      return;
    }
    this.#end ??= "aborted";
    // Resets, not FINs, so neither peer takes a cut stream for a whole one.
    this.#resetBoth();
  }

  #resetBoth(): void {
    this.#closed = true;
    this.#loop.release(this.#client.fd);
    this.#loop.release(this.#target.fd);
    closeWithReset(this.#client.fd);
    closeWithReset(this.#target.fd);
    this.#settle();
  }

  #onReady = (watched: Watched): void => {
    if (this.#closed) return;
    const side: Side = watched === this.#client ? "client" : "target";
    // Reads first: bytes that a peer sent before its reset are still queued,
    // and recv(2) returns them before it reports the error.
    const reading = side === "client" ? this.#up : this.#down;
    this.#pump(reading);
    this.#pump(reading === this.#up ? this.#down : this.#up);
    // After a failure found by the pumps, delivery has its own handler.
    if (this.#salvage !== undefined) return;
    if (!watched.failed || this.#closed) return;
    watched.failed = false;
    // A later read reports the error, unless the direction has ended or
    // waits for the other side to take held bytes, which may never happen.
    if (!reading.eof && reading.pending === null) return;
    const code = socketError(watched.fd);
    if (code !== 0) this.#fail(side, code);
  };

  #pump(d: Direction): void {
    if (this.#closed || d.finished || d.deferred || d.queued !== null) return;
    if (this.#salvage !== undefined) return;
    const symbols = net();
    if (d.pending !== null) {
      const result = this.#sendPending(d, d.pending);
      if (result > 0) return this.#fail(other(d.from), result);
      if (result < 0) return;
    }
    let reads = 0;
    while (!d.eof && d.src.readable) {
      if (++reads > READS_PER_TURN) {
        d.deferred = true;
        this.#loop.defer(() => {
          d.deferred = false;
          this.#pump(d);
        });
        return;
      }
      const batched = this.#batch.buffer();
      const buffer = batched ?? shared;
      const n = symbols.recv(d.src.fd, buffer, READ_BUFFER_SIZE, 0);
      if (n < 0) {
        const code = recvErrno(d.src.fd);
        if (!isRetry(code)) return this.#fail(d.from, code);
        d.src.readable = false;
        break;
      }
      if (n === 0) {
        d.eof = true;
        // The half-close timeout counts from the FIN.
        this.lastActive = this.#loop.now;
        break;
      }
      if (d.from === "client") this.sent += n;
      else this.received += n;
      this.lastActive = this.#loop.now;
      this.#lastQueued = undefined;
      // A short read emptied the socket, unless a FIN or an error is queued
      // behind the data, which only a further read reports.
      const drained = n < READ_BUFFER_SIZE && !d.src.hangup;
      if (drained && batched !== undefined) {
        d.src.readable = false;
        d.queued = batched;
        d.queuedLength = n;
        this.#batch.queue(d);
        return;
      }
      if (!this.#send(d, buffer, n)) return;
      if (drained) {
        d.src.readable = false;
        break;
      }
    }
    if (!d.eof || d.pending !== null) return;
    d.finished = true;
    // When the other direction has ended already, close() sends the FIN
    // itself, so a separate shutdown would be a wasted system call.
    if (++this.#ended === 2) {
      this.#close();
      return;
    }
    if (symbols.shutdown(d.dst.fd, SHUT_WR) < 0) {
      this.#fail(other(d.from), lastErrno());
    }
  }

  /**
   * Sends the first `n` bytes of `buffer` from `d`, and keeps what `dst` did
   * not take. Returns whether all of them went, and fails the pipe when the
   * send failed.
   */
  #send(d: Direction, buffer: Uint8Array, n: number): boolean {
    let written = net().send(d.dst.fd, buffer, n, MSG_NOSIGNAL);
    if (written < 0) {
      const code = sendErrno(d.dst.fd);
      if (!isRetry(code)) {
        this.#fail(other(d.from), code);
        return false;
      }
      written = 0;
    }
    if (written < n) {
      d.pending = buffer.slice(written, n);
      d.dst.writable = false;
      return false;
    }
    return true;
  }

  /** Sends the bytes that `d` queued in the send batch, at its end. */
  #sendQueued = (d: Direction): void => {
    const buffer = d.queued;
    d.queued = null;
    if (buffer === null || this.#closed || d.finished) return;
    // Reads on only if the socket reported new bytes meanwhile; otherwise
    // its next event does.
    if (this.#send(d, buffer, d.queuedLength) && d.src.readable) {
      this.#pump(d);
    }
  };

  /**
   * Sends `pending`, the bytes that `d` kept back. Returns 0 once all of them
   * are sent, -1 while the destination is full, or the errno of a failed send.
   */
  #sendPending(d: Direction, pending: Uint8Array): number {
    if (!d.dst.writable) return -1;
    const written = net().send(
      d.dst.fd,
      pending,
      pending.length,
      MSG_NOSIGNAL,
    );
    if (written < 0) {
      const code = sendErrno(d.dst.fd);
      if (!isRetry(code)) return code;
      d.dst.writable = false;
      return -1;
    }
    // A slow reader that keeps taking bytes is not idle.
    this.lastActive = this.#loop.now;
    this.#lastQueued = undefined;
    if (written < pending.length) {
      d.pending = pending.subarray(written);
      d.dst.writable = false;
      return -1;
    }
    d.pending = null;
    return 0;
  }

  /**
   * Ends the pipe after an error on `side` and resets the other side. Any
   * error counts, not only a reset, because a FIN would tell the peer that
   * the stream ended complete.
   *
   * Bytes that the failed side sent before its error are still delivered
   * first, as they would be without a proxy in between: the rest of its
   * receive queue and the bytes the other side did not take yet. The reset
   * follows once the other side's kernel acknowledged all of them, or after
   * `SALVAGE_LIMIT_MS`.
   */
  #fail(side: Side, code: number): void {
    if (this.#closed) return;
    if (this.#salvage !== undefined) {
      // The other side failed too: nothing more can reach it.
      this.#endSalvage();
      return;
    }
    this.#end ??= code === ECONNRESET || code === EPIPE ||
        code === ECONNABORTED
      ? `${side} reset`
      : `${side} error`;
    const d = side === "client" ? this.#up : this.#down;
    const back = d === this.#up ? this.#down : this.#up;
    // Nothing goes to the failed side anymore.
    back.pending = null;
    back.queued = null;
    back.finished = true;
    // Bytes queued in the send batch go first, before the rest of the queue.
    if (d.queued !== null) {
      d.pending = d.queued.slice(0, d.queuedLength);
      d.queued = null;
    }
    this.#salvage = d;
    this.#salvageUntil = this.#loop.now + SALVAGE_LIMIT_MS;
    d.src.handler = undefined;
    d.dst.handler = this.#onSalvageReady;
    this.#deliver();
  }

  #onSalvageReady = (watched: Watched): void => {
    if (watched.failed) {
      this.#endSalvage();
      return;
    }
    this.#deliver();
  };

  /**
   * Moves the failed side's remaining bytes to the other side, and resets
   * that side once its kernel acknowledged all of them.
   */
  #deliver(): void {
    const d = this.#salvage;
    if (d === undefined || this.#closed) return;
    const symbols = net();
    for (;;) {
      if (d.pending !== null) {
        const result = this.#sendPending(d, d.pending);
        if (result > 0) return this.#endSalvage();
        if (result < 0) return this.#checkLater();
      }
      if (d.eof) break;
      // recv(2) returns queued bytes before it reports the error, then 0.
      const n = symbols.recv(d.src.fd, shared, READ_BUFFER_SIZE, 0);
      if (n <= 0) {
        d.eof = true;
        break;
      }
      if (d.from === "client") this.sent += n;
      else this.received += n;
      d.pending = shared.slice(0, n);
    }
    if (sendQueueBytes(d.dst.fd) === 0) return this.#endSalvage();
    this.#checkLater();
  }

  /** Looks again shortly whether the other side took the bytes. */
  #checkLater(): void {
    if (this.#loop.now >= this.#salvageUntil) return this.#endSalvage();
    this.#salvageCheck ??= this.#loop.after(SALVAGE_POLL_MS, () => {
      this.#salvageCheck = undefined;
      this.#deliver();
    });
  }

  /** Closes the failed side and resets the other side. */
  #endSalvage(): void {
    const d = this.#salvage;
    if (d === undefined || this.#closed) return;
    this.#closed = true;
    this.#salvageCheck?.cancel();
    this.#loop.close(d.src.fd);
    this.#loop.release(d.dst.fd);
    closeWithReset(d.dst.fd);
    this.#settle();
  }

  #close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#loop.close(this.#client.fd);
    this.#loop.close(this.#target.fd);
    this.#settle();
  }

  #settle(): void {
    this.#up.pending = null;
    this.#down.pending = null;
    this.#onDone({
      sent: this.sent,
      received: this.received,
      end: this.#end ?? "closed",
    });
  }
}

function other(side: Side): Side {
  return side === "client" ? "target" : "client";
}
