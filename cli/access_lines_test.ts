import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import {
  accessLineWriter,
  jsonAccessLine,
  textAccessLine,
} from "./access_lines.ts";
import { formatJsonLine, formatTextLine } from "./logging.ts";
import { type AccessLine, writeAccessLine } from "../proxy/access_log.ts";

const lines: AccessLine[] = [
  {
    client: "192.0.2.7:40312",
    destination: undefined,
    app: "shop \u00e9t\u00e9",
    port: 6300,
    target: "localhost:9000 (127.0.0.1)",
    end: "closed",
    sent: 16,
    received: 2048,
    durationMs: 3,
  },
  {
    client: "[2001:db8::1]:5000",
    destination: "[2001:db8::2]:443",
    app: 'a "quoted" name',
    port: 443,
    target: "-",
    end: "reset at the app's MaxConnections",
    sent: 0,
    received: 0,
    durationMs: 0,
  },
];

/** Returns the records that LogTape makes of `lines`. */
async function logTapeRecords(): Promise<LogRecord[]> {
  const records: LogRecord[] = [];
  await configure({
    reset: true,
    sinks: { capture: (record) => records.push(record) },
    loggers: [
      { category: ["anyport"], lowestLevel: "info", sinks: ["capture"] },
      { category: ["logtape", "meta"], lowestLevel: "fatal", sinks: [] },
    ],
  });
  try {
    for (const line of lines) writeAccessLine(line);
  } finally {
    await reset();
  }
  return records;
}

const formats = [
  ["textAccessLine", "text", textAccessLine, formatTextLine],
  ["jsonAccessLine", "JSON", jsonAccessLine, formatJsonLine],
] as const;

for (const [name, kind, render, logTapeFormat] of formats) {
  Deno.test(`${name}() reads as LogTape's ${kind} line`, async () => {
    const records = await logTapeRecords();
    assert.equal(records.length, lines.length);
    records.forEach((record, i) => {
      const stamp = new Date(record.timestamp).toISOString();
      assert.equal(render(lines[i]!, stamp), logTapeFormat(record));
    });
  });
}

Deno.test("accessLineWriter() writes one line per access", () => {
  const written: string[] = [];
  const write = accessLineWriter("json", (line) => written.push(line));
  write(lines[0]!);
  write(lines[1]!);
  assert.equal(written.length, 2);
  assert.equal(
    JSON.parse(written[1]!).properties.destination,
    lines[1]!.destination,
  );
  assert.match(written[0]!, /^\{"@timestamp":"\d{4}-\d\d-\d\dT[\d:.]+Z"/);
});
