import {
  configure,
  getTextFormatter,
  jsonLinesFormatter,
  type LogLevel,
} from "@logtape/logtape";
import { stderrSink } from "./stderr_sink.ts";

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

/**
 * Sends every anyport log record at `level` or above to standard error.
 * Access lines (category `anyport.access`) can be turned off on their own.
 */
export async function setupLogging(options: LoggingOptions): Promise<void> {
  const formatter = options.format === "json"
    ? jsonLinesFormatter
    : getTextFormatter({
      timestamp: "rfc3339",
      category: ".",
      value: "bare",
    });
  await configure({
    reset: true,
    sinks: {
      stderr: stderrSink(formatter),
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
}
