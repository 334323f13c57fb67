import { basename, dirname, resolve } from "node:path";

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
  const relevant = relevantPaths(path);
  (async () => {
    for await (const event of watcher) {
      // Other files in the same directory, such as a log file, would put
      // the reload off for as long as they keep changing.
      if (!event.paths.some(relevant)) continue;
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

/**
 * Returns a test for paths whose change can change the config: the file
 * itself, the file it links to now or did at start, and the `..`-prefixed
 * entries through which Kubernetes swaps a mounted ConfigMap.
 */
function relevantPaths(path: string): (changed: string) => boolean {
  const own = resolve(path);
  const initial = realPath(path);
  let current = initial;
  return (changed) => {
    const full = resolve(changed);
    // Only a change of the path or of a `..` entry can move its target, so
    // events of other files in the directory cost no system call.
    if (full === own || basename(full).startsWith("..")) {
      current = realPath(path);
      return true;
    }
    return full === initial || full === current;
  };
}

/** Returns the resolved path of `path`, or `undefined` while it is missing. */
function realPath(path: string): string | undefined {
  try {
    return Deno.realPathSync(path);
  } catch {
    return undefined;
  }
}
