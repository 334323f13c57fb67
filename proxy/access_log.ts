/**
 * The access log: one line per finished or refused client connection.
 *
 * Through LogTape, a line cost 34-52 µs of CPU in two measurements, more than
 * half of what the proxy spends on a short connection (see NOTES.md,
 * Performance, step 18). So the command line installs a writer that formats
 * the line itself and queues it for standard error. Without one, as in tests
 * that start a proxy without the command line, lines go through LogTape.
 *
 * @module
 */
import { getLogger } from "@logtape/logtape";

const logger = getLogger(["anyport", "access"]);

/** The fields of one access line. */
export interface AccessLine {
  client: string;
  /** Original destination, where the frontend reports it (BPF mode). */
  destination: string | undefined;
  app: string;
  port: number;
  target: string;
  end: string;
  sent: number;
  received: number;
  durationMs: number;
}

/** A sink for access lines that formats and writes them itself. */
export type AccessLineWriter = (line: AccessLine) => void;

let writer: AccessLineWriter | undefined;

/**
 * Sends access lines to `next` from now on, or through LogTape again for
 * `undefined`.
 */
export function setAccessLineWriter(next: AccessLineWriter | undefined): void {
  writer = next;
}

/** Returns whether access lines are written at all. */
export function accessLogEnabled(): boolean {
  return writer !== undefined || logger.isEnabledFor("info");
}

/** Logs the line of one finished or refused client connection. */
export function writeAccessLine(line: AccessLine): void {
  if (writer !== undefined) {
    writer(line);
    return;
  }
  const { destination, ...rest } = line;
  if (destination === undefined) {
    logger.info(
      "{client} -> {app}:{port} via {target}: {end}, {sent} B sent, {received} B received, {durationMs} ms",
      rest,
    );
  } else {
    logger.info(
      "{client} -> {destination} ({app}) via {target}: {end}, {sent} B sent, {received} B received, {durationMs} ms",
      { destination, ...rest },
    );
  }
}
