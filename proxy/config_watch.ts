import { basename, dirname, resolve } from "node:path";

/** Quiet time after the last file event before a reload, in ms. */
const DEBOUNCE_MS = 200;

/**
 * Interval of the check of the config file's inode, size and modification
 * time, in ms. It finds the changes that the directory watches miss. Deno's
 * watcher reports nothing for a directory moved away and made again at the
 * same path (seen with Deno 2.9.6), even when that path is watched anew.
 */
const RECHECK_MS = 2_000;

/** Source of a reload request: a file event or SIGHUP. */
export type ReloadTrigger = "file" | "signal";

/**
 * Calls `onChange` when the config file may have changed on disk, or when
 * the process gets SIGHUP. File events are debounced. The directories of
 * the path, of its resolved target and of every target that a swapped
 * symlink points to later are watched. So a file replaced by a rename, a
 * swapped symlink (as Kubernetes does for a mounted ConfigMap) and edits of
 * the new target are seen at once. Every 2 s the file's inode, size and
 * modification time are compared too, so a change that no watch reports,
 * such as one in a directory that replaced the watched one, is seen within
 * that time. The caller compares the content to skip events that changed
 * nothing. Returns a function that stops watching.
 */
export function watchConfig(
  path: string,
  onChange: (trigger: ReloadTrigger) => void,
): () => void {
  const watchers = new Map<string, Deno.FsWatcher>();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  // The file as the last reload request found it.
  let stamp = fileStamp(path);
  const changed = () => {
    // A watcher may still hand over an event it read before it closed.
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => {
      stamp = fileStamp(path);
      onChange("file");
    }, DEBOUNCE_MS);
  };
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
        if (event.paths.some(relevant)) changed();
      }
    })().catch(() => {
      // The watcher was closed.
    });
  };
  watch(dirname(path));
  const target = realPath(path);
  if (target !== undefined) watch(dirname(target));
  const recheck = setInterval(() => {
    if (fileStamp(path) !== stamp) changed();
  }, RECHECK_MS);
  Deno.unrefTimer(recheck);
  const onSignal = () => onChange("signal");
  Deno.addSignalListener("SIGHUP", onSignal);
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearInterval(recheck);
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
 * Returns the inode, size and modification time of the file that `path`
 * leads to, joined, or "missing".
 */
function fileStamp(path: string): string {
  try {
    const info = Deno.statSync(path);
    return `${info.ino} ${info.size} ${info.mtime?.getTime()}`;
  } catch {
    return "missing";
  }
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
