/**
 * Access lines formatted without LogTape, for speed: text and JSON lines
 * that read exactly as LogTape's formatters in `cli/logging.ts` would write
 * them. Values need no escaping for the text format, because the config
 * check keeps control characters out of app names and targets, and the
 * other fields are addresses, numbers and fixed words.
 *
 * @module
 */
import type { AccessLine, AccessLineWriter } from "../proxy/access_log.ts";

/** Returns the message of an access line, without time, level or category. */
export function accessMessage(line: AccessLine): string {
  const from = line.destination === undefined
    ? `${line.client} -> ${line.app}:${line.port}`
    : `${line.client} -> ${line.destination} (${line.app})`;
  return `${from} via ${line.target}: ${line.end}, ${line.sent} B sent, ` +
    `${line.received} B received, ${line.durationMs} ms`;
}

/** Formats an access line as text, `stamp` being its RFC 3339 time. */
export function textAccessLine(line: AccessLine, stamp: string): string {
  return `${stamp} [INF] anyport.access: ${accessMessage(line)}\n`;
}

/** Formats an access line as a JSON line, `stamp` being its RFC 3339 time. */
export function jsonAccessLine(line: AccessLine, stamp: string): string {
  const { destination, ...rest } = line;
  const properties = destination === undefined
    ? rest
    : { destination, ...rest };
  return `{"@timestamp":"${stamp}","level":"INFO","message":` +
    `${JSON.stringify(accessMessage(line))},"logger":"anyport.access",` +
    `"properties":${JSON.stringify(properties)}}\n`;
}

/**
 * Builds a writer that formats each access line and passes it to
 * `writeLine`. The time is formatted once per millisecond, since a busy
 * proxy ends many connections within one.
 */
export function accessLineWriter(
  format: "text" | "json",
  writeLine: (line: string) => void,
): AccessLineWriter {
  const render = format === "json" ? jsonAccessLine : textAccessLine;
  let stampedAt = -1;
  let stamp = "";
  return (line) => {
    const now = Date.now();
    if (now !== stampedAt) {
      stampedAt = now;
      stamp = new Date(now).toISOString();
    }
    writeLine(render(line, stamp));
  };
}
