import { dirname } from "node:path";

/** Quiet time after the last file event before a reload, in ms. */
const DEBOUNCE_MS = 200;

/** Source of a reload request: a file event or SIGHUP. */
export type ReloadTrigger = "file" | "signal";

/**
 * Calls `onChange` when the config file may have changed on disk, or when
 * the process gets SIGHUP. File events are debounced. The directories of
 * the path and of its resolved target are watched, and any event there
 * counts, so a file replaced by a rename or a swapped symlink (as
 * Kubernetes does for a mounted ConfigMap) is seen too. The caller compares
 * the content to skip events that changed nothing.
 * Returns a function that stops watching.
 */
export function watchConfig(
  path: string,
  onChange: (trigger: ReloadTrigger) => void,
): () => void {
  const directories = new Set([dirname(path)]);
  try {
    directories.add(dirname(Deno.realPathSync(path)));
  } catch {
    // The file is gone; its own directory is still watched.
  }
  const watcher = Deno.watchFs([...directories], { recursive: false });
  let timer: ReturnType<typeof setTimeout> | undefined;
  (async () => {
    for await (const _ of watcher) {
      clearTimeout(timer);
      timer = setTimeout(() => onChange("file"), DEBOUNCE_MS);
    }
  })().catch(() => {
    // The watcher was closed.
  });
  const onSignal = () => onChange("signal");
  Deno.addSignalListener("SIGHUP", onSignal);
  return () => {
    clearTimeout(timer);
    Deno.removeSignalListener("SIGHUP", onSignal);
    try {
      watcher.close();
    } catch {
      // Already closed.
    }
  };
}
