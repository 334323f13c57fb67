/**
 * BPF state that outlives the proxy process: the sk_lookup link and the maps,
 * pinned in a bpffs under `<pin root>/<network namespace inode>/`.
 *
 * A new state is pinned into a temporary directory that is then renamed into
 * place, so other processes never see a half-made state. A later process
 * reuses the pins, replaces the program with its own build through the link,
 * and keeps the maps, so steering never stops across restarts.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { BpfObject } from "../ffi/bpf_object.ts";
import { linkDetach, linkUpdate, objGet, objPin } from "../ffi/bpf_fd.ts";
import {
  closeFd,
  ENOENT,
  openReadOnly,
  OsError,
  tryLockExclusive,
  unlock,
} from "../ffi/libc.ts";
import { LibbpfError } from "../ffi/libbpf.ts";
import {
  ADDED_MAPS,
  DEFAULT_PIN_ROOT,
  MAP_NAMES,
  type MapName,
  PROGRAM_NAME,
} from "./layout.ts";
import { STEER_OBJECT } from "./object.ts";
import { StateLockBusy } from "./state_lock_busy.ts";
import { checkBpfRequirements } from "./requirements.ts";
import { readNetnsLinkInfo } from "./sk_lookup_links.ts";
import { SteeringMaps } from "./steering_maps.ts";

export { DEFAULT_PIN_ROOT };

/** Maximum wait for another process's lock on the state, in ms. */
const LOCK_WAIT_MS = 3_000;
/** Interval of the checks whether that lock is free, in ms. */
const LOCK_RETRY_MS = 5;

/** File name of the pinned link inside a state directory. */
const LINK_PIN = "link";

const logger = getLogger(["anyport", "bpf"]);

/**
 * Describes another process that has kept the lock on the state in `path`
 * for `ms`, with `consequence` (such as ", so ...") after the time, and how
 * to find that process.
 */
export function lockHeldMessage(
  path: string,
  ms: number,
  consequence: string,
): string {
  return `Another process has held the lock on the BPF state in "${path}" for ${ms} ms${consequence}: it may be stopped or hung. /proc/locks names it (an FLOCK on the directory's inode), so stop or resume it`;
}

/** Kernel facts about the pinned link. */
export interface LinkInfo {
  /** BPF link id, as `bpftool link list` shows it. */
  id: number;
  /** Id of the attached program. */
  programId: number;
  /** Inode of the network namespace, 0 once that namespace is gone. */
  netnsInode: number;
}

/** Open descriptors of a pinned state. */
export class PinnedState implements Disposable {
  /** State directory, `<pin root>/<network namespace inode>`. */
  readonly path: string;
  readonly maps: SteeringMaps;
  readonly linkFd: number;
  #closed = false;
  /** The program this process loaded, kept to put it back into the link. */
  #object: BpfObject | undefined;
  /** The state directory, opened for the lock, or -1 once found missing. */
  #lockFd: number | undefined;
  /** Whether this process has the lock. */
  #holding = false;

  constructor(path: string, maps: SteeringMaps, linkFd: number) {
    this.path = path;
    this.maps = maps;
    this.linkFd = linkFd;
  }

  /**
   * Runs `fn` under an exclusive lock on the state directory (`flock(2)`),
   * so that no other anyport process changes the maps meanwhile. Every
   * process checks who owns steering and writes the maps under it. Without
   * it, a process that found itself the owner could write its ports right
   * after a newer one took over and wrote its own, which leaves a mix of the
   * two configs steered. The kernel releases the lock of a process that
   * dies. `fn` must not await, since the lock would be held across it.
   *
   * Waits for the lock off the JavaScript thread's back, checking every few
   * ms, so a stopped or hung process that holds it never stalls this one's
   * connections.
   *
   * @throws {Error} when another process held the lock for `waitMs`
   */
  async locked<T>(fn: () => T, waitMs = LOCK_WAIT_MS): Promise<T> {
    const deadline = Date.now() + waitMs;
    for (;;) {
      const result = this.tryLocked(fn);
      if (result.ran) return result.value;
      if (Date.now() >= deadline) {
        throw new StateLockBusy(lockHeldMessage(this.path, waitMs, ""));
      }
      await new Promise((resolve) => setTimeout(resolve, LOCK_RETRY_MS));
    }
  }

  /**
   * Runs `fn` under the lock of {@linkcode locked} if no other process
   * has it, and otherwise not at all.
   */
  tryLocked<T>(fn: () => T): { ran: true; value: T } | { ran: false } {
    if (this.#holding) return { ran: true, value: fn() };
    const fd = this.#openLock();
    // The pins were removed, by anyport bpf detach or by hand: no other
    // process can find these maps to write them.
    if (fd < 0) return { ran: true, value: fn() };
    if (!tryLockExclusive(fd)) return { ran: false };
    this.#holding = true;
    try {
      return { ran: true, value: fn() };
    } finally {
      this.#holding = false;
      unlock(fd);
    }
  }

  #openLock(): number {
    if (this.#lockFd === undefined) {
      try {
        this.#lockFd = openReadOnly(this.path);
      } catch (error) {
        if (!(error instanceof OsError && error.errno === ENOENT)) throw error;
        this.#lockFd = -1;
      }
    }
    return this.#lockFd;
  }

  /** Returns whether the link is still pinned, so it outlives this process. */
  isPinned(): boolean {
    const fd = objGetIfPinned(`${this.path}/${LINK_PIN}`);
    if (fd < 0) return false;
    closeFd(fd);
    return true;
  }

  /** Keeps `object`, the program that this process attached, until dispose. */
  keepProgram(object: BpfObject): void {
    this.#object?.[Symbol.dispose]();
    this.#object = object;
  }

  /**
   * Puts this process's program into the link: when it takes steering over
   * from an earlier process, and after a newer process swapped in its own
   * and then stopped (a rollback, perhaps of an upgrade with a changed
   * program).
   *
   * @returns false when this process kept no program, as for status
   */
  installProgram(): boolean {
    if (this.#object === undefined) return false;
    linkUpdate(this.linkFd, this.#object.program(PROGRAM_NAME).fd);
    return true;
  }

  /** Reads the kernel's information about the link. */
  linkInfo(): LinkInfo {
    const { id, programId, netnsInode } = readNetnsLinkInfo(
      this.linkFd,
      "read information of the pinned BPF link",
    );
    return { id, programId, netnsInode };
  }

  /** Closes the descriptors; the pins keep the link and the maps alive. */
  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#lockFd !== undefined && this.#lockFd >= 0) closeFd(this.#lockFd);
    this.maps[Symbol.dispose]();
    closeFd(this.linkFd);
    this.#object?.[Symbol.dispose]();
  }
}

/** Returns the inode of this process's network namespace. */
export function netnsInode(): number {
  return Deno.statSync("/proc/self/ns/net").ino ?? 0;
}

/** Returns the state directory for this network namespace. */
export function statePath(pinRoot: string): string {
  return `${pinRoot}/${netnsInode()}`;
}

/**
 * Attaches the steering program to this network namespace, or takes over the
 * pinned state of an earlier process, replacing its program with this build.
 *
 * @throws {Error} when a requirement is missing, or the program cannot be
 * loaded, attached or pinned
 */
export function attachSteering(pinRoot: string): PinnedState {
  checkBpfRequirements(pinRoot);
  Deno.mkdirSync(pinRoot, { recursive: true, mode: 0o700 });
  removeStaleTemporaryDirs(pinRoot);
  const path = statePath(pinRoot);
  // Another process may pin its state between our check and our rename,
  // and then the second attempt takes that state over.
  for (let attempt = 1; attempt <= 2; attempt++) {
    const state = openPinnedState(path);
    if (state !== undefined) {
      if (state.linkInfo().netnsInode === netnsInode()) return reuse(state);
      state[Symbol.dispose]();
      logger.warn("Removing BPF state of a gone network namespace: {path}", {
        path,
      });
      Deno.removeSync(path, { recursive: true });
    }
    const object = createPins(pinRoot, path);
    if (object !== undefined) {
      const created = openPinnedState(path);
      if (created !== undefined) {
        created.keepProgram(object);
        return created;
      }
      object[Symbol.dispose]();
    }
  }
  throw new Error(
    `Cannot attach the BPF steering program: the state in "${path}" ` +
      `changed during both attempts; check for another process replacing it`,
  );
}

/**
 * Opens the pinned state in `path`, for status or detach.
 *
 * @returns `undefined` when nothing is pinned there
 * @throws {Error} when the pins exist but cannot be opened or do not match
 * the layouts of this build
 */
export function openPinnedState(path: string): PinnedState | undefined {
  let linkFd: number;
  try {
    linkFd = objGet(`${path}/${LINK_PIN}`);
  } catch (error) {
    if (!exists(path)) return undefined;
    throw error;
  }
  const fds: Partial<Record<MapName, number>> = {};
  try {
    for (const name of MAP_NAMES) {
      fds[name] = ADDED_MAPS.has(name)
        ? objGetIfPinned(`${path}/${name}`)
        : objGet(`${path}/${name}`);
    }
  } catch (error) {
    for (const fd of Object.values(fds)) if (fd >= 0) closeFd(fd);
    closeFd(linkFd);
    throw unusableState(path, error);
  }
  try {
    // SteeringMaps owns the descriptors, and closes them when it throws.
    const maps = new SteeringMaps(fds as Record<MapName, number>);
    return new PinnedState(path, maps, linkFd);
  } catch (error) {
    closeFd(linkFd);
    throw unusableState(path, error);
  }
}

function unusableState(path: string, error: unknown): Error {
  return new Error(
    `Cannot open the BPF state pinned in "${path}": ` +
      `${errorMessage(error)}; remove it with "anyport bpf detach"`,
    { cause: error },
  );
}

/**
 * Detaches the steering program of this network namespace and removes its
 * pins, even while a proxy still runs.
 *
 * @returns false when nothing was pinned
 */
export function detachSteering(pinRoot: string): boolean {
  const path = statePath(pinRoot);
  removeStaleTemporaryDirs(pinRoot);
  if (!exists(path)) return false;
  try {
    const linkFd = objGet(`${path}/${LINK_PIN}`);
    try {
      linkDetach(linkFd);
    } finally {
      closeFd(linkFd);
    }
  } catch (error) {
    logger.warn("Cannot detach the pinned BPF link: {error}", { error });
  }
  Deno.removeSync(path, { recursive: true });
  try {
    Deno.removeSync(pinRoot);
  } catch {
    // Other network namespaces still have state here, or it is a mount point.
  }
  return true;
}

/** An embedded BPF object that libbpf cannot open. */
class InvalidObjectError extends Error {}

/**
 * Opens this build's program.
 *
 * @throws {InvalidObjectError} naming the object and the build step when
 * libbpf rejects it, such as a file cut short or overwritten
 */
function openSteerObject(): BpfObject {
  try {
    return BpfObject.open(STEER_OBJECT);
  } catch (error) {
    throw new InvalidObjectError(
      `The BPF program ebpf/steer.bpf.o built into anyport is invalid ` +
        `(${errorMessage(error)}): rebuild it with ebpf/build.sh, then ` +
        `start anyport again (compiled binaries: rebuild them too)`,
      { cause: error },
    );
  }
}

/**
 * Loads this build's program with the pinned maps. It goes into the link
 * only when this process takes steering over
 * ({@linkcode PinnedState.installProgram}), so a start that fails before
 * leaves the running process's program in place.
 */
function reuse(state: PinnedState): PinnedState {
  let object: BpfObject | undefined;
  try {
    object = openSteerObject();
    const missing = MAP_NAMES.filter((name) => !state.maps.has(name));
    for (const name of MAP_NAMES) {
      if (state.maps.has(name)) object.map(name).reuseFd(state.maps.fd(name));
    }
    object.load();
    // Maps of this build that the pinned state lacks: pinned before the
    // program that uses them goes in.
    for (const name of missing) {
      objPin(object.map(name).fd, `${state.path}/${name}`);
      state.maps.adopt(name, objGet(`${state.path}/${name}`));
    }
    state.keepProgram(object);
    logger.info("Reusing pinned BPF state in {path}", { path: state.path });
    return state;
  } catch (error) {
    object?.[Symbol.dispose]();
    state[Symbol.dispose]();
    if (error instanceof InvalidObjectError) throw error;
    throw new Error(
      `Cannot reuse the BPF state pinned in "${state.path}": ` +
        `${errorMessage(error)}; remove it with "anyport bpf detach"`,
      { cause: error },
    );
  }
}

/**
 * Loads and attaches the program, pins it into a temporary directory and
 * renames that to `path`.
 *
 * @returns the loaded object, or `undefined` when another process pinned
 * its state at `path` first
 */
function createPins(pinRoot: string, path: string): BpfObject | undefined {
  const temporary = `${pinRoot}/${temporaryPrefix()}${Deno.pid}`;
  const object = openSteerObject();
  const netnsFd = openReadOnly("/proc/self/ns/net");
  try {
    object.load();
    using link = object.program(PROGRAM_NAME).attachNetns(netnsFd);
    Deno.mkdirSync(temporary, { mode: 0o700 });
    for (const name of MAP_NAMES) {
      objPin(object.map(name).fd, `${temporary}/${name}`);
    }
    link.pin(`${temporary}/${LINK_PIN}`);
    Deno.renameSync(temporary, path);
  } catch (error) {
    object[Symbol.dispose]();
    removeIfPresent(temporary);
    if (exists(path)) return undefined;
    throw error;
  } finally {
    closeFd(netnsFd);
  }
  logger.info("Attached the BPF steering program, pinned in {path}", { path });
  return object;
}

/** Removes temporary directories left by processes that died while pinning. */
function removeStaleTemporaryDirs(pinRoot: string): void {
  const prefix = temporaryPrefix();
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(pinRoot)];
  } catch {
    return;
  }
  for (const entry of entries) {
    if (!entry.name.startsWith(prefix)) continue;
    const pid = entry.name.slice(prefix.length);
    if (exists(`/proc/${pid}`)) continue;
    logger.info("Removing pins left by process {pid}", { pid });
    removeIfPresent(`${pinRoot}/${entry.name}`);
  }
}

function temporaryPrefix(): string {
  return `tmp-${netnsInode()}-`;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function removeIfPresent(path: string): void {
  try {
    Deno.removeSync(path, { recursive: true });
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

/**
 * Opens the object pinned at `path`, or returns -1 when nothing is pinned
 * there. It calls `bpf_obj_get`, because Deno allows a stat under /sys
 * only with every permission.
 */
function objGetIfPinned(path: string): number {
  try {
    return objGet(path);
  } catch (error) {
    if (error instanceof LibbpfError && error.errno === ENOENT) return -1;
    throw error;
  }
}
