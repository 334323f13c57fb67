import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { MAX_QUEUED_CHARS, stderrSink } from "./stderr_sink.ts";

function record(message: string): LogRecord {
  return {
    category: ["anyport", "test"],
    level: "info",
    message: [message],
    rawMessage: message,
    timestamp: 0,
    properties: {},
  };
}

const formatter = (r: LogRecord) => `${r.level} ${r.message.join("")}\n`;

/** A writer whose writes finish only when the test lets them. */
class HeldWriter {
  readonly writes: string[] = [];
  #release: (() => void)[] = [];

  write = (bytes: Uint8Array): Promise<number> => {
    this.writes.push(new TextDecoder().decode(bytes));
    const { promise, resolve } = Promise.withResolvers<number>();
    this.#release.push(() => resolve(bytes.length));
    return promise;
  };

  /** Finishes the writes made so far. */
  release(): void {
    const pending = this.#release;
    this.#release = [];
    for (const finish of pending) finish();
  }
}

async function turns(count = 5): Promise<void> {
  for (let i = 0; i < count; i++) await Promise.resolve();
}

Deno.test("stderrSink batches the lines of one turn", async () => {
  const writer = new HeldWriter();
  await using sink = stderrSink(formatter, writer.write);
  sink(record("a"));
  sink(record("b"));
  await turns();
  assert.deepEqual(writer.writes, ["info a\ninfo b\n"]);
  writer.release();
});

Deno.test("stderrSink queues lines behind a slow write", async () => {
  const writer = new HeldWriter();
  await using sink = stderrSink(formatter, writer.write);
  sink(record("first"));
  await turns();
  sink(record("second"));
  sink(record("third"));
  await turns();
  assert.deepEqual(writer.writes, ["info first\n"]);
  writer.release();
  await turns();
  assert.deepEqual(writer.writes, [
    "info first\n",
    "info second\ninfo third\n",
  ]);
  writer.release();
});

Deno.test("stderrSink drops and counts excess lines", async () => {
  const writer = new HeldWriter();
  await using sink = stderrSink(formatter, writer.write);
  sink(record("held"));
  await turns();
  // The write of "held" never finishes for now, as with a full pipe.
  const line = "x".repeat(1000);
  const fits = Math.floor(MAX_QUEUED_CHARS / formatter(record(line)).length);
  for (let i = 0; i < fits + 7; i++) sink(record(line));
  // The queued lines go out in pieces of whole lines, one write at a time.
  let written = "";
  for (let i = 0; i < 2_000 && !written.endsWith("enough\n"); i++) {
    writer.release();
    await turns();
    written = writer.writes.slice(1).join("");
  }
  writer.release();
  assert.equal(written.split(line).length - 1, fits);
  assert.match(written, /warning Dropped 7 log lines: standard error/);
  assert.ok(written.endsWith("take them fast enough\n"), "notice comes last");
  const count = writer.writes.length;
  sink(record("after"));
  await turns();
  assert.equal(writer.writes[count], "info after\n");
  writer.release();
});

Deno.test("stderrSink stops after a failed write", async () => {
  let calls = 0;
  await using sink = stderrSink(formatter, () => {
    calls++;
    return Promise.reject(new Deno.errors.BrokenPipe("closed"));
  });
  sink(record("lost"));
  await turns();
  sink(record("ignored"));
  await turns();
  assert.equal(calls, 1);
});

Deno.test("stderrSink flushes its queue on dispose", async () => {
  const written: string[] = [];
  const sink = stderrSink(formatter, async (bytes) => {
    await new Promise((resolve) => setTimeout(resolve, 20));
    written.push(new TextDecoder().decode(bytes));
    return bytes.length;
  });
  sink(record("one"));
  await turns();
  sink(record("two"));
  await sink[Symbol.asyncDispose]();
  assert.deepEqual(written, ["info one\n", "info two\n"]);
});

Deno.test("stderrSink writes formatted lines in turn with records", async () => {
  const writer = new HeldWriter();
  await using sink = stderrSink(formatter, writer.write);
  sink(record("a"));
  sink.writeLine("already formatted\n");
  sink(record("b"));
  await turns();
  assert.deepEqual(writer.writes, ["info a\nalready formatted\ninfo b\n"]);
  writer.release();
});
