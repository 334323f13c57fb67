import { basename, dirname } from "node:path";

/** Quiet time after the last file event before a reload, in ms. */
const DEBOUNCE_MS = 200;

/**
 * Calls `onChange` when the config file changes on disk or the process gets
 * SIGHUP. File events are debounced, and the directory is watched rather
 * than the file, so editors that replace the file by renaming are seen too.
 * Returns a function that stops watching.
 */
export function watchConfig(path: string, onChange: () => void): () => void {
  const name = basename(path);
  const watcher = Deno.watchFs(dirname(path), { recursive: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  const schedule = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, DEBOUNCE_MS);
  };
  (async () => {
    for await (const event of watcher) {
      if (event.paths.some((p) => basename(p) === name)) schedule();
    }
  })().catch(() => {
    // The watcher was closed.
  });
  Deno.addSignalListener("SIGHUP", onChange);
  return () => {
    clearTimeout(timer);
    Deno.removeSignalListener("SIGHUP", onChange);
    try {
      watcher.close();
    } catch {
      // Already closed.
    }
  };
}
