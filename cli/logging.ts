import {
  configure,
  getTextFormatter,
  jsonLinesFormatter,
  type LogLevel,
  type LogRecord,
  type Sink,
  type TextFormatter,
} from "@logtape/logtape";

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

/**
 * Builds a sink that collects the lines logged in one turn of JavaScript and
 * writes them to standard error in one synchronous call.
 *
 * A stream sink writes one line per turn of Deno's event loop, and the
 * proxy's event loop gives Deno a turn only every few milliseconds under load,
 * so access lines piled up in memory faster than they were written.
 * NOTE: a reader that stops reading standard error (a full pipe) stalls the
 * proxy, as with any blocking log write.
 */
function stderrSink(formatter: TextFormatter): Sink & Disposable {
  const encoder = new TextEncoder();
  let lines: string[] = [];
  const flush = () => {
    if (lines.length === 0) return;
    const bytes = encoder.encode(lines.join(""));
    lines = [];
    try {
      let offset = 0;
      while (offset < bytes.length) {
        offset += Deno.stderr.writeSync(bytes.subarray(offset));
      }
    } catch {
      // Standard error is closed: there is nowhere left to report it.
    }
  };
  const sink = (record: LogRecord) => {
    if (lines.length === 0) queueMicrotask(flush);
    lines.push(formatter(record));
  };
  return Object.assign(sink, { [Symbol.dispose]: flush });
}
