import { getLogger } from "@logtape/logtape";
import { setImmediate } from "node:timers";
import {
  EFD_CLOEXEC,
  EFD_NONBLOCK,
  EPOLL_DATA_OFFSET,
  EPOLL_EVENT_SIZE,
  lastErrno,
  net,
} from "../ffi/net.ts";
import { OsError } from "../ffi/libc.ts";

const log = getLogger(["anyport", "loop"]);

export const EPOLLIN = 0x001;
export const EPOLLOUT = 0x004;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;
export const EPOLLRDHUP = 0x2000;
export const EPOLLET = 0x80000000;

const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CLOEXEC = 0o2000000;

/**
 * How long the loop blocks the JavaScript thread in `epoll_wait` when nothing
 * is ready, in ms, before it waits on a worker thread instead. Under load the
 * next event nearly always comes within it, which spares a thread switch.
 */
const BUSY_WAIT_MS = 1;

const WAKE_ONE = new Uint8Array(new BigUint64Array([1n]).buffer);
const WAKE_DRAIN = new Uint8Array(8);

/** Awaits after each batch; see the end of the loop in `#run`. */
const MICROTASK_TURNS = 3;

/**
 * Number of timer durations beyond which empty timer queues are dropped.
 * Below it they stay, because deleting and adding `Map` entries for every
 * connection makes V8 rebuild the map's table again and again, and the old
 * tables can keep young objects alive (see `SlotSet`).
 */
const KEPT_TIMER_QUEUES = 16;

/** Events taken from the kernel per wait. */
const MAX_EVENTS = 256;

/**
 * Maximum time the loop keeps the JavaScript thread to itself while events
 * keep arriving, in ms, checked between batches. After it, the loop yields
 * to Deno's event loop once, so timers, signals and DNS answers run.
 *
 * A reload awaits several Deno calls in turn, and under load each await
 * waits for the next yield. Under 64-connection ping-pong, SIGHUP to the
 * "Reloaded" line took 87-125 ms with a yield every 5 ms and 22-56 ms with
 * one every 1 ms. A yield costs about 3 µs.
 */
const YIELD_MS = 1;

/** A timer of the loop; see {@linkcode EventLoop.after}. */
export class Deadline {
  /** Time to fire, from `Date.now()`. */
  readonly at: number;
  /** The callback; unset once fired or cancelled. */
  fire: (() => void) | undefined;

  constructor(at: number, fire: () => void) {
    this.at = at;
    this.fire = fire;
  }

  /** Keeps the timer from firing. */
  cancel(): void {
    this.fire = undefined;
  }
}

/** Called when a watched descriptor becomes ready; see {@linkcode Watched}. */
export type ReadyHandler = (watched: Watched) => void;

/**
 * A descriptor in the loop and what the kernel last reported for it. The
 * loop only sets the flags. Readiness is reported once per change
 * (edge-triggered), so the handler clears `readable` or `writable` itself
 * when a call returns `EAGAIN`.
 */
export class Watched {
  readonly fd: number;
  readable = false;
  writable = false;
  /** The peer closed its sending side or the whole connection. */
  hangup = false;
  /** The kernel reported an error; `SO_ERROR` has the code. */
  failed = false;
  handler: ReadyHandler | undefined;
  /**
   * Number of this registration, kept in the epoll event's data next to the
   * descriptor. A descriptor closed and reused within one batch of events
   * gets a new number, so the old socket's events do not reach the new one.
   */
  readonly generation: number;

  constructor(
    fd: number,
    handler: ReadyHandler | undefined,
    generation: number,
  ) {
    this.fd = fd;
    this.handler = handler;
    this.generation = generation;
  }
}

/**
 * The data path's event loop: one epoll instance for every client, target
 * and listening socket of a proxy, driven from the JavaScript thread.
 *
 * While events keep coming, the loop calls `epoll_wait` directly, so a busy
 * proxy costs one system call per batch and no thread switch. When nothing
 * is ready for `BUSY_WAIT_MS`, it waits on a worker thread through a
 * nonblocking FFI call, so Deno's own event loop (timers, signals, DNS, file
 * watching) runs while the proxy is idle. After `YIELD_MS` of busy time it
 * yields to Deno's event loop with `setImmediate`, which costs a few
 * microseconds instead of a thread switch, so Deno's work waits about that
 * long at most.
 */
export class EventLoop {
  readonly #epoll: number;
  readonly #wakeFd: number;
  readonly #watched: (Watched | undefined)[] = [];
  readonly #ctl = new Uint8Array(EPOLL_EVENT_SIZE);
  readonly #ctlView = new DataView(this.#ctl.buffer);
  #deferred: (() => void)[] = [];
  readonly #batchEnd: (() => void)[] = [];
  /**
   * Timers by duration. Timers of one duration are set in time order, so
   * each queue is sorted by deadline and only its head needs checking.
   */
  readonly #timers = new Map<number, Deadline[]>();
  /**
   * Whether the loop waits on a worker thread. That wait's timeout was set
   * before timers that promise callbacks add meanwhile, so adding one wakes
   * the loop.
   */
  #sleeping = false;
  /** Number of the last registration; see {@linkcode Watched.generation}. */
  #generation = 0;
  #stopping = false;
  #running: Promise<void> | undefined;
  /** `Date.now()` when the current batch of events arrived. */
  now = Date.now();
  /**
   * Whether handlers of the current batch of events or its deferred tasks
   * are running, as opposed to timers, batch-end tasks or code outside the
   * loop.
   */
  dispatching = false;

  /** @throws {OsError} when epoll or the wake-up descriptor cannot open */
  constructor() {
    const symbols = net();
    this.#epoll = symbols.epoll_create1(EPOLL_CLOEXEC);
    if (this.#epoll < 0) throw new OsError("epoll_create1", lastErrno());
    this.#wakeFd = symbols.eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (this.#wakeFd < 0) {
      const code = lastErrno();
      symbols.close(this.#epoll);
      throw new OsError("eventfd", code);
    }
    this.#add(new Watched(this.#wakeFd, undefined, 0), EPOLLIN);
  }

  /** Starts dispatching events; returns at once. */
  start(): void {
    this.#running ??= this.#run();
  }

  /**
   * Stops the loop and closes its epoll instance. Watched descriptors stay
   * open; their owners close them.
   */
  async stop(): Promise<void> {
    if (this.#stopping) return await this.#running;
    this.#stopping = true;
    this.#wake();
    await this.#running;
    const symbols = net();
    symbols.close(this.#wakeFd);
    symbols.close(this.#epoll);
  }

  /**
   * Watches a connected or connecting socket for input, output and hang-up,
   * edge-triggered.
   *
   * @throws {OsError} when `epoll_ctl(2)` fails, such as `ENOMEM`
   */
  watch(fd: number, handler?: ReadyHandler): Watched {
    const watched = new Watched(fd, handler, this.#nextGeneration());
    this.#add(watched, EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET);
    this.#watched[fd] = watched;
    return watched;
  }

  /**
   * Watches a listening socket for incoming connections, level-triggered,
   * so connections left in the backlog are reported again.
   *
   * @throws {OsError} when `epoll_ctl(2)` fails
   */
  watchListener(fd: number, handler: ReadyHandler): Watched {
    const watched = new Watched(fd, handler, this.#nextGeneration());
    this.#add(watched, EPOLLIN);
    this.#watched[fd] = watched;
    return watched;
  }

  /** Stops watching `fd` without closing it. */
  unwatch(fd: number): void {
    if (this.#watched[fd] === undefined) return;
    this.#watched[fd] = undefined;
    net().epoll_ctl(this.#epoll, EPOLL_CTL_DEL, fd, this.#ctl);
  }

  /**
   * Forgets `fd` without a system call, for a caller that closes it next;
   * closing removes it from epoll.
   */
  release(fd: number): void {
    this.#watched[fd] = undefined;
  }

  /** Stops watching `fd` and closes it; closing removes it from epoll. */
  close(fd: number): void {
    this.#watched[fd] = undefined;
    net().close(fd);
  }

  /**
   * Calls `fire` after `ms` milliseconds, checked after every batch of
   * events. Much cheaper than `setTimeout` for a timer per connection that
   * is nearly always cancelled, such as a connect timeout.
   */
  after(ms: number, fire: () => void): Deadline {
    const deadline = new Deadline(Date.now() + ms, fire);
    let queue = this.#timers.get(ms);
    if (queue === undefined) this.#timers.set(ms, queue = []);
    queue.push(deadline);
    if (this.#sleeping) this.#wake();
    return deadline;
  }

  /** Runs `task` after the current batch of events, still in this loop. */
  defer(task: () => void): void {
    this.#deferred.push(task);
  }

  /**
   * Runs `task` at the end of every batch of events: after the handlers, and
   * again after the deferred tasks, before the timers.
   */
  onBatchEnd(task: () => void): void {
    this.#batchEnd.push(task);
  }

  #nextGeneration(): number {
    this.#generation = (this.#generation + 1) >>> 0;
    return this.#generation;
  }

  #add({ fd, generation }: Watched, events: number) {
    this.#ctlView.setUint32(0, events >>> 0, true);
    this.#ctlView.setInt32(EPOLL_DATA_OFFSET, fd, true);
    this.#ctlView.setUint32(EPOLL_DATA_OFFSET + 4, generation, true);
    if (net().epoll_ctl(this.#epoll, EPOLL_CTL_ADD, fd, this.#ctl) < 0) {
      throw new OsError(`epoll_ctl add fd ${fd}`, lastErrno());
    }
  }

  #wake() {
    net().write(this.#wakeFd, WAKE_ONE, 8);
  }

  async #run(): Promise<void> {
    const symbols = net();
    const events = new Uint8Array(EPOLL_EVENT_SIZE * MAX_EVENTS);
    const view = new DataView(events.buffer);
    let lastYield = Date.now();
    while (!this.#stopping) {
      let count: number;
      if (Date.now() - lastYield >= YIELD_MS) {
        await new Promise((resolve) => setImmediate(resolve));
        count = symbols.epoll_wait(this.#epoll, events, MAX_EVENTS, 0);
        lastYield = Date.now();
      } else {
        // With deferred tasks waiting, the loop only polls. Otherwise one
        // call both polls and, when nothing is ready, waits a little.
        const idle = this.#deferred.length === 0;
        count = symbols.epoll_wait(
          this.#epoll,
          events,
          MAX_EVENTS,
          idle ? BUSY_WAIT_MS : 0,
        );
        if (count === 0 && idle) {
          this.#sleeping = true;
          count = await symbols.epoll_wait_off_thread(
            this.#epoll,
            events,
            MAX_EVENTS,
            this.#untilNextTimer(),
          );
          this.#sleeping = false;
          lastYield = Date.now();
        }
      }
      if (count < 0) {
        // The worker thread's errno is not readable here; EINTR is the only
        // error that a valid epoll descriptor returns.
        await Promise.resolve();
        continue;
      }
      this.now = Date.now();
      this.dispatching = true;
      for (let i = 0; i < count; i++) {
        const offset = i * EPOLL_EVENT_SIZE;
        this.#dispatch(
          view.getInt32(offset + EPOLL_DATA_OFFSET, true),
          view.getUint32(offset + EPOLL_DATA_OFFSET + 4, true),
          view.getUint32(offset, true),
        );
      }
      this.dispatching = false;
      this.#endBatch();
      this.dispatching = true;
      this.#runDeferred();
      this.dispatching = false;
      this.#endBatch();
      this.#runTimers();
      // Lets promise continuations that the handlers queued run before the
      // next poll, such as a connect that waited for a DNS answer. Each
      // await lets one more step of a chain of async calls run.
      for (let i = 0; i < MICROTASK_TURNS; i++) await Promise.resolve();
    }
  }

  #dispatch(fd: number, generation: number, events: number) {
    if (fd === this.#wakeFd) {
      while (net().read(fd, WAKE_DRAIN, 8) === 8) { /* empty the counter */ }
      return;
    }
    const watched = this.#watched[fd];
    if (watched === undefined || watched.generation !== generation) return;
    if (events & EPOLLIN) watched.readable = true;
    if (events & EPOLLOUT) watched.writable = true;
    if (events & (EPOLLHUP | EPOLLRDHUP)) {
      watched.hangup = true;
      watched.readable = true;
    }
    if (events & EPOLLERR) {
      watched.failed = true;
      watched.readable = true;
    }
    try {
      watched.handler?.(watched);
    } catch (error) {
      log.error("Event handler for fd {fd} failed: {error}", { fd, error });
    }
  }

  #endBatch() {
    for (const task of this.#batchEnd) {
      try {
        task();
      } catch (error) {
        log.error("Batch-end task failed: {error}", { error });
      }
    }
  }

  /** Fires the timers that are due and drops cancelled ones at the heads. */
  #runTimers() {
    if (this.#timers.size === 0) return;
    // Cancelled heads go at once, so timers die young, which is cheap to
    // collect, instead of waiting for their deadline in the queue.
    const now = Date.now();
    for (const [ms, queue] of this.#timers) {
      while (queue.length > 0) {
        const head = queue[0]!;
        if (head.fire !== undefined && head.at > now) break;
        queue.shift();
        const fire = head.fire;
        head.fire = undefined;
        try {
          fire?.();
        } catch (error) {
          log.error("Timer failed: {error}", { error });
        }
      }
      if (queue.length === 0 && this.#timers.size > KEPT_TIMER_QUEUES) {
        this.#timers.delete(ms);
      }
    }
  }

  /** Returns the wait until the next timer in ms, or -1 for no timer. */
  #untilNextTimer(): number {
    this.#runTimers();
    let next = Infinity;
    for (const queue of this.#timers.values()) {
      if (queue.length > 0) next = Math.min(next, queue[0]!.at);
    }
    return next === Infinity ? -1 : Math.max(0, Math.ceil(next - Date.now()));
  }

  /** Runs the tasks deferred so far; tasks they defer wait for the next batch. */
  #runDeferred() {
    if (this.#deferred.length === 0) return;
    const tasks = this.#deferred;
    this.#deferred = [];
    for (const task of tasks) {
      try {
        task();
      } catch (error) {
        log.error("Deferred task failed: {error}", { error });
      }
    }
  }
}

export { isRetry } from "../ffi/net.ts";
