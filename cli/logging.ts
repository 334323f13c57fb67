import {
  configure,
  getTextFormatter,
  jsonLinesFormatter,
  type LogLevel,
  type LogRecord,
} from "@logtape/logtape";
import { stderrSink } from "./stderr_sink.ts";
import { accessLineWriter } from "./access_lines.ts";
import { setAccessLineWriter } from "../proxy/access_log.ts";

/** Log levels accepted by `--log-level`, from most to least verbose. */
export const LOG_LEVELS: readonly LogLevel[] = [
  "trace",
  "debug",
  "info",
  "warning",
  "error",
  "fatal",
];

/** Logging settings from the command line. */
export interface LoggingOptions {
  level: LogLevel;
  format: "text" | "json";
  /** Whether to write one info line per finished connection. */
  accessLog: boolean;
}

/** Formats a record as a text line: time, level, category and message. */
export const formatTextLine = getTextFormatter({
  timestamp: "rfc3339",
  category: ".",
  value: "bare",
});

/**
 * Sends every anyport log record at `level` or above to standard error.
 * Access lines (category `anyport.access`) can be turned off on their own.
 * When they are on, they skip LogTape (see `proxy/access_log.ts`) and go to
 * the same sink, formatted alike.
 */
export async function setupLogging(options: LoggingOptions): Promise<void> {
  const formatter = options.format === "json" ? formatJsonLine : formatTextLine;
  const sink = stderrSink(formatter);
  await configure({
    reset: true,
    sinks: {
      stderr: sink,
    },
    loggers: [
      { category: ["anyport"], lowestLevel: options.level, sinks: ["stderr"] },
      {
        category: ["anyport", "access"],
        lowestLevel: options.accessLog ? options.level : "fatal",
        sinks: [],
        parentSinks: options.accessLog ? "inherit" : "override",
      },
      {
        category: ["logtape", "meta"],
        lowestLevel: "warning",
        sinks: ["stderr"],
      },
    ],
  });
  const accessLines = options.accessLog &&
    LOG_LEVELS.indexOf(options.level) <= LOG_LEVELS.indexOf("info");
  setAccessLineWriter(
    accessLines ? accessLineWriter(options.format, sink.writeLine) : undefined,
  );
}

/**
 * Formats a record as a JSON line, as LogTape's JSON Lines formatter does,
 * except that string values appear in the message as they are, as in the
 * text format: `Started in bpf mode`, not `Started in \"bpf\" mode`. The
 * properties keep every value with its type.
 */
export function formatJsonLine(record: LogRecord): string {
  return jsonLinesFormatter({ ...record, message: [renderMessage(record)] });
}

function renderMessage(record: LogRecord): string {
  let text = "";
  record.message.forEach((part, i) => {
    text += i % 2 === 0 || typeof part === "string"
      ? String(part)
      : Deno.inspect(part);
  });
  return text;
}
