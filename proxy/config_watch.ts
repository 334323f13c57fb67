import { basename, dirname, resolve } from "node:path";

/** Quiet time after the last file event before a reload, in ms. */
const DEBOUNCE_MS = 200;

/**
 * Interval of the check that each watched directory is still the one at its
 * path, in ms. A watch follows the directory itself, so one that was moved
 * away and replaced, as some deploy tools do, would report nothing more.
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
 * the new target are seen too. A directory replaced by another one at its
 * path is watched again, and counts as a change. The caller compares
 * the content to skip events that changed nothing.
 * Returns a function that stops watching.
 */
export function watchConfig(
  path: string,
  onChange: (trigger: ReloadTrigger) => void,
): () => void {
  const watchers = new Map<
    string,
    { watcher: Deno.FsWatcher; inode: number }
  >();
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const changed = () => {
    // A watcher may still hand over an event it read before it closed.
    if (stopped) return;
    clearTimeout(timer);
    timer = setTimeout(() => onChange("file"), DEBOUNCE_MS);
  };
  // A symlink swapped to a target in another directory brings a watcher for
  // that directory, so that edits of the new target are seen too.
  const relevant = relevantPaths(path, (target) => watch(dirname(target)));
  const watch = (directory: string) => {
    if (watchers.has(directory)) return;
    const inode = inodeOf(directory);
    let watcher: Deno.FsWatcher;
    try {
      if (inode === undefined) return;
      watcher = Deno.watchFs(directory, { recursive: false });
    } catch {
      // A directory that is gone cannot hold the config's target either.
      return;
    }
    watchers.set(directory, { watcher, inode });
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
  const directories = () => {
    const target = realPath(path);
    return target === undefined
      ? [dirname(path)]
      : [dirname(path), dirname(target)];
  };
  for (const directory of directories()) watch(directory);
  const recheck = setInterval(() => {
    for (const directory of directories()) {
      const watched = watchers.get(directory);
      const inode = inodeOf(directory);
      if (inode === undefined || inode === watched?.inode) continue;
      if (watched !== undefined) {
        closeQuietly(watched.watcher);
        watchers.delete(directory);
      }
      watch(directory);
      changed();
    }
  }, RECHECK_MS);
  Deno.unrefTimer(recheck);
  const onSignal = () => onChange("signal");
  Deno.addSignalListener("SIGHUP", onSignal);
  return () => {
    stopped = true;
    clearTimeout(timer);
    clearInterval(recheck);
    Deno.removeSignalListener("SIGHUP", onSignal);
    for (const { watcher } of watchers.values()) closeQuietly(watcher);
  };
}

function closeQuietly(watcher: Deno.FsWatcher): void {
  try {
    watcher.close();
  } catch {
    // Already closed.
  }
}

/** Returns the inode of directory `path`, or `undefined` while it is missing. */
function inodeOf(path: string): number | undefined {
  try {
    return Deno.statSync(path).ino ?? undefined;
  } catch {
    return undefined;
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
