import { basename, dirname, resolve } from "node:path";

/** Quiet time after the last file event before a reload, in ms. */
const DEBOUNCE_MS = 200;

/** Source of a reload request: a file event or SIGHUP. */
export type ReloadTrigger = "file" | "signal";

/**
 * Calls `onChange` when the config file may have changed on disk, or when
 * the process gets SIGHUP. File events are debounced. The directories of
 * the path, of its resolved target and of every target that a swapped
 * symlink points to later are watched. So a file replaced by a rename, a
 * swapped symlink (as Kubernetes does for a mounted ConfigMap) and edits of
 * the new target are seen too. The caller compares
 * the content to skip events that changed nothing.
 * Returns a function that stops watching.
 */
export function watchConfig(
  path: string,
  onChange: (trigger: ReloadTrigger) => void,
): () => void {
  const watchers = new Map<string, Deno.FsWatcher>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  // A symlink swapped to a target in another directory brings a watcher for
  // that directory, so that edits of the new target are seen too.
  const relevant = relevantPaths(path, (target) => watch(dirname(target)));
  const watch = (directory: string) => {
    if (watchers.has(directory)) return;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(directory, { recursive: false });
    } catch {
      // A directory that is gone cannot hold the config's target either.
      return;
    }
    watchers.set(directory, watcher);
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
  };
  watch(dirname(path));
  const target = realPath(path);
  if (target !== undefined) watch(dirname(target));
  const onSignal = () => onChange("signal");
  Deno.addSignalListener("SIGHUP", onSignal);
  return () => {
    clearTimeout(timer);
    Deno.removeSignalListener("SIGHUP", onSignal);
    for (const watcher of watchers.values()) {
      try {
        watcher.close();
      } catch {
        // Already closed.
      }
    }
  };
}

/**
 * Returns a test for paths whose change can change the config: the file
 * itself, the file it links to now or did at start, and the `..`-prefixed
 * entries through which Kubernetes swaps a mounted ConfigMap.
 */
function relevantPaths(
  path: string,
  onTarget: (target: string) => void,
): (changed: string) => boolean {
  const own = resolve(path);
  const initial = realPath(path);
  let current = initial;
  return (changed) => {
    const full = resolve(changed);
    // Only a change of the path or of a `..` entry can move its target, so
    // events of other files in the directory cost no system call.
    if (full === own || basename(full).startsWith("..")) {
      current = realPath(path);
      if (current !== undefined) onTarget(current);
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
