import assert from "node:assert/strict";
import type { LogRecord } from "@logtape/logtape";
import { formatJsonLine } from "./logging.ts";

function record(message: unknown[], properties: Record<string, unknown>) {
  return {
    category: ["anyport"],
    level: "info",
    message,
    rawMessage: "",
    timestamp: Date.UTC(2026, 0, 1),
    properties,
  } as LogRecord;
}

Deno.test("formatJsonLine() writes string values bare in the message", () => {
  const line = formatJsonLine(record(
    ["Started in ", "bpf", " mode: ", 3, " ports, up to ", 10n, ""],
    { mode: "bpf", ports: 3 },
  ));
  const parsed = JSON.parse(line);

  assert.equal(parsed.message, "Started in bpf mode: 3 ports, up to 10n");
  assert.equal(parsed.level, "INFO");
  assert.equal(parsed.logger, "anyport");
  assert.equal(parsed["@timestamp"], "2026-01-01T00:00:00.000Z");
  assert.deepEqual(parsed.properties, { mode: "bpf", ports: 3 });
  assert.ok(line.endsWith("}\n"), line);
});

Deno.test("formatJsonLine() keeps a line break in a value escaped", () => {
  const line = formatJsonLine(record(["Reload rejected: ", "a\nb", ""], {}));

  assert.equal(line.split("\n").length, 2, line);
  assert.equal(JSON.parse(line).message, "Reload rejected: a\nb");
});
