import type { LogRecord, Sink, TextFormatter } from "@logtape/logtape";

/**
 * Log text kept in memory while standard error is slow to take it, in
 * UTF-16 code units (about bytes for log lines). Lines beyond it are
 * dropped and counted.
 */
export const MAX_QUEUED_CHARS = 1024 * 1024;

/** Maximum wait for queued lines at exit, in ms. */
const EXIT_FLUSH_MS = 2000;

/**
 * A LogTape sink for standard error, which also takes lines formatted
 * elsewhere.
 */
export type StderrSink = Sink & AsyncDisposable & {
  /** Queues `line`, which ends with a line break, like a formatted record. */
  writeLine(line: string): void;
};

/**
 * Builds a sink that writes log lines to standard error without ever
 * blocking the proxy.
 *
 * Lines logged while a write is in progress are queued and go out together
 * in the next write, so a busy proxy makes few writes. A reader that stops
 * reading (a full pipe to a stalled log collector) stalls only the write in
 * progress, which runs on one of Deno's worker threads. Meanwhile the queue
 * grows to `MAX_QUEUED_CHARS` and further lines are dropped. Once the reader
 * takes data again, a warning reports how many were lost. At exit the sink
 * waits up to two seconds for the queue to drain.
 *
 * @param write writes some bytes and returns how many it took. It is
 * standard error unless a test passes its own.
 */
export function stderrSink(
  formatter: TextFormatter,
  write: (bytes: Uint8Array) => Promise<number> = (bytes) =>
    Deno.stderr.write(bytes),
): StderrSink {
  const encoder = new TextEncoder();
  let queue: string[] = [];
  let queued = 0;
  let dropped = 0;
  let broken = false;
  let draining: Promise<void> | undefined;

  const drain = async () => {
    // Lines logged later in this turn of JavaScript join the first write.
    await Promise.resolve();
    while (queue.length > 0 || dropped > 0) {
      let text = queue.join("");
      queue = [];
      queued = 0;
      if (dropped > 0) {
        text += formatter(droppedRecord(dropped));
        dropped = 0;
      }
      const bytes = encoder.encode(text);
      try {
        for (let offset = 0; offset < bytes.length;) {
          offset += await write(bytes.subarray(offset));
        }
      } catch {
        // Standard error is closed: there is nowhere left to report it.
        broken = true;
        queue = [];
        break;
      }
    }
    draining = undefined;
  };

  const writeLine = (line: string) => {
    if (broken) return;
    if (queued + line.length > MAX_QUEUED_CHARS) {
      dropped++;
      return;
    }
    queue.push(line);
    queued += line.length;
    draining ??= drain();
  };

  const sink = (record: LogRecord) => {
    if (!broken) writeLine(formatter(record));
  };

  const flush = async () => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, EXIT_FLUSH_MS);
    });
    // A write started after the first one ended is waited for too.
    while (draining !== undefined) {
      const finished = await Promise.race([
        draining.then(() => true),
        timeout.then(() => false),
      ]);
      if (!finished) break;
    }
    clearTimeout(timer);
  };

  return Object.assign(sink, { [Symbol.asyncDispose]: flush, writeLine });
}

function droppedRecord(count: number): LogRecord {
  const message = `Dropped ${count} log lines: standard error did not ` +
    "take them fast enough";
  return {
    category: ["anyport", "log"],
    level: "warning",
    message: [message],
    rawMessage: message,
    timestamp: Date.now(),
    properties: { dropped: count },
  };
}
