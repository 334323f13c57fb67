import { getLogger } from "@logtape/logtape";
import { Acceptor } from "./acceptor.ts";
import { EventLoop } from "./event_loop.ts";
import {
  decodeSockAddr,
  SOCKADDR_SIZE,
  type SocketAddress,
  unmapped,
} from "./sockaddr.ts";
import { net } from "../ffi/net.ts";
import { formatHostPort } from "./address.ts";
import type { ConnHandler, Frontend, PortRange } from "./frontend.ts";
import { expandRanges } from "./ports.ts";
import {
  formatAddress,
  formatPrefix,
  parseAddress,
  type Prefix,
  prefixContains,
} from "./prefix.ts";
import { type LocalListener, readLocalListeners } from "./local_listeners.ts";
import {
  attachSteering,
  DEFAULT_PIN_ROOT,
  lockHeldMessage,
  type PinnedState,
} from "../ebpf/pinned_state.ts";
import type { Counters } from "../ebpf/steering_maps.ts";
import { MAX_PREFIXES } from "../ebpf/layout.ts";
import { counted, firstOf } from "./plural.ts";
import { LogRateLimiter, withSuppressed } from "./rate_limit.ts";
import { getSockOptInt, SO_COOKIE, SOL_SOCKET } from "../ffi/libc.ts";
import { openProxySocket, type ProxySocket } from "./proxy_socket.ts";
import {
  otherSkLookupLinks,
  type SkLookupLink,
} from "../ebpf/sk_lookup_links.ts";

/**
 * After another process takes the sockmap over, connections that the kernel
 * steered to this socket just before can still be completing their
 * handshakes. Closing waits until no connection arrived for this long.
 */
const DRAIN_IDLE_MS = 200;
/** Upper bound on that wait, in case connections keep arriving. */
const DRAIN_MAX_MS = 2000;
/**
 * Interval of the check that this process still owns steering, in ms. It
 * bounds how long steered ports stay refused after a newer process stops
 * while this one still runs.
 */
const OWNERSHIP_CHECK_MS = 50;
/** Time the lock may stay taken before the ownership check warns, in ms. */
const LOCK_WARN_MS = 1_000;

const logger = getLogger(["anyport", "bpf"]);
const limiter = new LogRateLimiter();

/** Prefixes that a log line lists, before it only counts the rest. */
const MAX_LOGGED_PREFIXES = 16;

/** Options of {@linkcode BpfFrontend.open}. */
export interface BpfFrontendOptions {
  /**
   * Destination prefixes to steer from the first
   * {@linkcode BpfFrontend.apply}, unless it names others. Connections to
   * configured ports on other local addresses are left to the kernel's usual
   * socket lookup. An empty list steers nothing.
   */
  prefixes: readonly Prefix[];
  /** Called for every steered connection with its destination port. */
  onConn: ConnHandler;
  /**
   * Event loop that accepts the connections. Without one, the frontend
   * runs its own and stops it on close.
   */
  loop?: EventLoop;
  /**
   * Directory on a bpffs for the pins; each network namespace gets its own
   * subdirectory.
   *
   * @default {"/sys/fs/bpf/anyport"}
   */
  pinRoot?: string;
}

/**
 * Frontend that accepts every configured port through one socket: an
 * sk_lookup BPF program steers connections for the configured ports and
 * prefixes to it.
 *
 * The program and its maps stay pinned when the process exits. A new process
 * started while the old one runs takes over without a refused connection.
 * When no process runs, connections to steered ports and addresses are
 * refused rather than passed to other sockets.
 */
export class BpfFrontend implements Frontend, AsyncDisposable {
  readonly #state: PinnedState;
  readonly #listener: ProxySocket;
  readonly #fd: number;
  readonly #cookie: bigint;
  readonly #onConn: ConnHandler;
  /** Steered prefixes, or those requested at open before the first update. */
  #prefixes: readonly Prefix[] = [];
  /** Prefixes as last logged, joined. */
  #loggedPrefixes: string | undefined;
  /** Ports in the ports map, as this process last wrote or read them. */
  #ports: Set<number>;
  #socketInserted = false;
  #lastAccept = 0;
  #acceptor: Acceptor | undefined;
  /** The loop that this frontend started itself, if any. */
  #ownLoop: EventLoop | undefined;
  #closed = false;
  /** Whether another process's socket is in the sockmap. */
  #replaced = false;
  /** Cookies of the sockets that this one took the sockmap over from. */
  readonly #displaced = new Set<bigint>();
  /** Cookies of the sockets seen in the sockmap since this one left it. */
  readonly #owners = new Set<bigint>();
  #detachedLogged = false;
  #ownershipTimer: ReturnType<typeof setInterval> | undefined;
  /** Since when the ownership checks found the lock taken, if they do. */
  #lockBusySince: number | undefined;
  #lockWarned = false;

  private constructor(
    state: PinnedState,
    listener: ProxySocket,
    onConn: ConnHandler,
  ) {
    this.#state = state;
    this.#listener = listener;
    this.#onConn = onConn;
    this.#fd = listener.fd;
    this.#cookie = getSockOptInt(this.#fd, SOL_SOCKET, SO_COOKIE, 8);
    this.#ports = state.maps.readPorts();
  }

  /**
   * Attaches the steering program, or takes over the pinned one, and opens
   * the proxy socket. Steering to it starts with the first
   * {@linkcode apply}; until then an earlier process keeps the connections.
   *
   * @throws {Error} when BPF cannot work here, naming what is missing and how
   * to provide it: libbpf, privileges, a bpffs or sk_lookup support
   */
  static open(options: BpfFrontendOptions): BpfFrontend {
    // The socket first, so that a host where it cannot open gets no program
    // attached and pinned. It takes IPv6 connections only when a prefix
    // needs it, because IPv4 connections then cost more (see proxy_socket.ts).
    const listener = openProxySocket(options.prefixes.some(isIpv6));
    let state: PinnedState | undefined;
    try {
      state = attachSteering(options.pinRoot ?? DEFAULT_PIN_ROOT);
      const frontend = new BpfFrontend(state, listener, options.onConn);
      frontend.#prefixes = [...options.prefixes];
      let loop = options.loop;
      if (loop === undefined) {
        loop = frontend.#ownLoop = new EventLoop();
        loop.start();
      }
      frontend.#acceptor = new Acceptor(
        loop,
        frontend.#fd,
        (fd, peer) => frontend.#dispatch(fd, peer),
        logger,
        "the BPF proxy socket",
      );
      return frontend;
    } catch (error) {
      listener.close();
      state?.[Symbol.dispose]();
      throw error;
    }
  }

  /** Local address of the proxy socket, reachable directly only from here. */
  get addr(): Deno.NetAddr {
    return this.#listener.addr;
  }

  /**
   * Steers `ports` on the addresses in `prefixes` to this socket and stops
   * steering the rest, as one update: when a map write fails, the ports and
   * prefixes steered before are written back. New ports and prefixes are
   * added before old ones are removed, so one in both sets never refuses a
   * connection. The first call also puts this socket into the sockmap,
   * taking the steered ports over from an earlier process.
   *
   * @param prefixes destination prefixes. The default is those in force, or
   * before the first call, those given to {@linkcode BpfFrontend.open}.
   * @throws {Error} when a map cannot be updated, such as a full prefix map
   * or a closed frontend, or for an IPv6 prefix when the socket was opened
   * for IPv4 only
   */
  async apply(
    ports: readonly PortRange[],
    prefixes: readonly Prefix[] = this.#prefixes,
    commit?: () => void,
  ): Promise<void> {
    this.#checkOpen("apply ports");
    const ipv6 = prefixes.find(isIpv6);
    if (ipv6 !== undefined && !this.#listener.ipv6) {
      throw new Error(
        `SteerPrefixes now include the IPv6 prefix ${formatPrefix(ipv6)}, ` +
          "but the proxy socket takes IPv4 connections only, because every " +
          "prefix was IPv4 at start: restart anyport to steer IPv6. In BPF " +
          "mode the new process takes over without refusing connections",
      );
    }
    const requested = expandRanges(ports);
    // The routes switch only once the lock is taken, because while a stopped
    // process has it, the maps still steer the old ports here.
    await this.#state.locked(() => this.#update(requested, prefixes, commit));
  }

  readonly socketCount = 1;

  pause(): void {
    this.#acceptor?.pause();
  }

  resume(): void {
    this.#acceptor?.resume();
  }

  /** Reads the program's counters, summed over all CPUs. */
  counters(): Counters {
    this.#checkOpen("read counters");
    return this.#state.maps.readCounters();
  }

  /**
   * Stops accepting. When another process has taken the sockmap over, first
   * accepts the connections still arriving on this socket. When this process
   * owns steering and another process is on standby, it hands steering to
   * that one first, and then accepts what still arrives. Otherwise steering stays
   * pinned, and connections to steered ports are refused until the next
   * process inserts its socket. In that case the socket leaves the sockmap
   * first, and the connections that the kernel queued on it are accepted,
   * which closing the socket would reset. Established connections are not
   * touched.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#ownershipTimer);
    let left;
    try {
      // A process that never took steering over has nothing to undo.
      left = this.#socketInserted
        ? await this.#state.locked(() => this.#leave())
        : this.#leave();
    } catch (error) {
      logger.warn("Leaving BPF steering without the lock: {error}", {
        error: (error as Error).message,
      });
      left = this.#leave();
    }
    const { cookie, drain } = left;
    if (drain) await this.#drain();
    const attached = this.#isAttached();
    const pinned = attached && this.#state.isPinned();
    const olderWaiting = cookie === this.#cookie && this.#olderWaiting();
    // Closing the socket also removes it from the sockmap, in the kernel.
    this.#acceptor?.close();
    this.#listener.close();
    await this.#ownLoop?.stop();
    this.#state[Symbol.dispose]();
    logger.info("Closed proxy socket {address}", {
      address: formatHostPort(this.addr.hostname, this.addr.port),
    });
    if (cookie === this.#cookie && attached && !pinned) {
      logger.info(
        "BPF steering ends with this process: its pins were removed, so its link goes with it",
      );
    } else if (cookie === this.#cookie && attached && olderWaiting) {
      logger.info(
        "An older anyport process still runs and takes steering back within {maxMs} ms; until then connections to steered ports are refused",
        { maxMs: 3 * OWNERSHIP_CHECK_MS },
      );
    } else if (cookie === this.#cookie && attached) {
      logger.info(
        "BPF steering stays attached: connections to steered ports are refused until anyport starts again or anyport bpf detach removes it",
      );
    }
  }

  /**
   * Takes this socket out of the maps, as the first step of closing.
   * Returns the socket in the sockmap, or `undefined` after a hand-over to
   * the standby socket, and whether connections that the kernel steered
   * here before are still to be accepted.
   */
  #leave(): { cookie: bigint | undefined; drain: boolean } {
    // A standby socket that closes would take every steered connection
    // while it drains, if the owner stops at the same time.
    this.#leaveStandby();
    const cookie = this.#state.maps.socketCookie();
    const standby = this.#state.maps.standbyCookie();
    const own = cookie === this.#cookie;
    if (
      own && standby !== undefined && standby !== this.#cookie &&
      this.#isAttached()
    ) {
      this.#state.maps.removeSocket();
      logger.info(
        "Handed steering to the anyport process standing by; accepting the connections already steered here",
      );
      return { cookie: undefined, drain: true };
    }
    if (this.#socketInserted && cookie !== undefined && !own) {
      return { cookie, drain: true };
    }
    if (own && this.#isAttached()) {
      this.#state.maps.removeSocket();
      return { cookie, drain: true };
    }
    return { cookie, drain: false };
  }

  /** Returns whether a process that this one took the sockmap over from still listens. */
  #olderWaiting(): boolean {
    if (this.#displaced.size === 0) return false;
    try {
      return readLocalListeners().some((listener) =>
        this.#displaced.has(listener.cookie)
      );
    } catch {
      return false;
    }
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  /** Writes the maps. Runs under the state's lock. */
  #update(
    requested: Set<number>,
    prefixes: readonly Prefix[],
    commit: (() => void) | undefined,
  ): void {
    this.#checkOpen("apply ports");
    commit?.();
    if (this.#socketInserted && this.#isReplaced()) {
      // The maps belong to the newer process now; writing this process's
      // ports would steer them to a proxy without those apps.
      const same = requested.size === this.#ports.size &&
        [...requested].every((port) => this.#ports.has(port)) &&
        prefixes.map(formatPrefix).join() ===
          this.#prefixes.map(formatPrefix).join();
      if (!same) {
        logger.warn(
          "Steering not changed: a newer anyport process owns it. This process keeps these ports and steers them if it takes steering back in a rollback",
        );
      }
      this.#ports = requested;
      this.#prefixes = [...prefixes];
      return;
    }
    const first = !this.#socketInserted;
    // The maps as they are, not as this process last wrote or saw them. The
    // process that owned steering before may have changed them since this
    // one opened. One that does not lock them (an older anyport) may have
    // changed them even since this one's last update.
    const before = {
      ports: this.#state.maps.readPorts(),
      prefixes: this.#state.maps.readPrefixes(),
    };
    const added = [...requested].filter((port) => !before.ports.has(port));
    const removed = [...before.ports].filter((port) => !requested.has(port));
    try {
      if (first) {
        // This build's program and socket go in before the ports and
        // prefixes. A process killed between the writes then leaves an empty
        // sockmap, and the process it replaced takes steering back with its
        // own ports, rather than keeping this one's ports and prefixes.
        this.#state.installProgram();
        this.#insertSocket();
      }
      this.#writePrefixes(prefixes, before.prefixes);
      this.#state.maps.addPorts(added);
      this.#state.maps.removePorts(removed);
    } catch (error) {
      this.#restore(before.ports, before.prefixes);
      throw new Error(
        `BPF steering update failed, so the earlier ports and prefixes stay steered: ${
          (error as Error).message
        }`,
        { cause: error },
      );
    }
    this.#ports = requested;
    this.#prefixes = [...prefixes];
    this.#logPrefixes();
    this.#warnOfShadowedListeners(first ? [...requested] : added);
    this.#warnOfOtherLinks();

    if (!this.#isAttached()) {
      logger.warn(
        "Ports updated to {count}, but BPF steering is detached: nothing is steered until anyport restarts",
        { count: requested.size },
      );
      return;
    }
    if (first || added.length > 0 || removed.length > 0) {
      logger.info("Steered ports: {count} ({added} added, {removed} removed)", {
        count: requested.size,
        added: added.length,
        removed: removed.length,
      });
    }
  }

  #insertSocket(): void {
    const displaced = this.#state.maps.socketCookie();
    if (displaced !== undefined) this.#displaced.add(displaced);
    this.#state.maps.setSocket(this.#fd);
    this.#socketInserted = true;
    logger.info("Steering to proxy socket {address} (socket cookie {cookie})", {
      address: formatHostPort(this.addr.hostname, this.addr.port),
      cookie: Number(this.#cookie),
    });
    this.#ownershipTimer = setInterval(
      () => this.#checkOwnership(),
      OWNERSHIP_CHECK_MS,
    );
    Deno.unrefTimer(this.#ownershipTimer as unknown as number);
  }

  /**
   * Makes the prefix maps hold `prefixes`, given that they hold `current`.
   * New prefixes go in before stale ones go out, except in a family whose
   * map has no room for both: there the stale ones go first.
   */
  #writePrefixes(prefixes: readonly Prefix[], current: readonly Prefix[]) {
    const requested = new Map(prefixes.map((p) => [formatPrefix(p), p]));
    const present = new Set(current.map(formatPrefix));
    const added = [...requested].filter(([key]) => !present.has(key))
      .map(([, prefix]) => prefix);
    const stale = current.filter((p) => !requested.has(formatPrefix(p)));
    const first = new Set<Prefix>();
    for (const family of [4, 6] as const) {
      const inFamily = (p: Prefix) => p.family === family;
      const total = current.filter(inFamily).length +
        added.filter(inFamily).length;
      if (total <= MAX_PREFIXES) continue;
      for (const prefix of stale.filter(inFamily)) first.add(prefix);
    }
    for (const prefix of first) this.#state.maps.removePrefix(prefix);
    for (const prefix of added) this.#state.maps.addPrefix(prefix);
    for (const prefix of stale) {
      if (!first.has(prefix)) this.#state.maps.removePrefix(prefix);
    }
  }

  /** Logs the steered prefixes at the first update and when they change. */
  #logPrefixes(): void {
    const all = this.#prefixes.map(formatPrefix);
    const listed = all.join(", ");
    if (listed === this.#loggedPrefixes) return;
    this.#loggedPrefixes = listed;
    logger.info("Steered prefixes: {prefixes}", {
      prefixes: firstOf(all, MAX_LOGGED_PREFIXES) || "none",
    });
  }

  /**
   * Writes back the ports and prefixes of before a failed update. A failure
   * here leaves steering between the two configs, which only a restart
   * repairs, so it is logged as an error.
   */
  #restore(ports: ReadonlySet<number>, prefixes: readonly Prefix[]): void {
    try {
      this.#writeSteering(ports, prefixes);
    } catch (error) {
      logger.error(
        "Undoing a failed BPF steering update failed: {error}. Steered ports and prefixes may now match neither config, so restart anyport to rewrite them",
        { error },
      );
    }
  }

  /**
   * Warns of other sockets that listen on steered ports and addresses. The
   * kernel runs the program before it looks for a listener, so those sockets
   * get no connection while their port is steered.
   */
  #warnOfShadowedListeners(ports: readonly number[]): void {
    if (ports.length === 0) return;
    const steered = new Set(ports);
    const proxyAddress = parseAddress(this.addr.hostname);
    let listeners: LocalListener[];
    try {
      listeners = readLocalListeners();
    } catch (error) {
      logger.debug("Listing local listeners failed: {error}", { error });
      return;
    }
    // The proxy sockets of anyport processes that owned steering before
    // this one pick their ports from the ephemeral range too.
    const proxySockets = new Set([...this.#displaced, ...this.#owners]);
    const shadowed = listeners.filter((listener) =>
      steered.has(listener.port) &&
      !proxySockets.has(listener.cookie) &&
      !(listener.port === this.addr.port && proxyAddress !== undefined &&
        sameBytes(listener.address, proxyAddress)) &&
      (listener.address.every((byte) => byte === 0) ||
        this.#prefixes.some((prefix) =>
          prefixContains(prefix, unmapped(Array.from(listener.address)))
        ))
    );
    if (shadowed.length === 0) return;
    const labels = shadowed.map((listener) =>
      formatHostPort(formatAddress(listener.address), listener.port)
    );
    logger.warn(
      "Other sockets listen on steered ports ({listeners}). Steering takes their connections, so remove those ports from the config or move the other services",
      { listeners: firstOf(labels, 5) },
    );
  }

  /**
   * Warns of sk_lookup programs that others attached to this network
   * namespace, such as a second anyport pinned in another bpffs. They run
   * in attach order with anyport's and can take or refuse steered
   * connections.
   */
  #warnOfOtherLinks(): void {
    let links: SkLookupLink[] | undefined;
    try {
      const own = this.#state.linkInfo();
      links = otherSkLookupLinks(own.netnsInode, own.id);
    } catch (error) {
      logger.debug("Listing sk_lookup links failed: {error}", { error });
      return;
    }
    if (links === undefined || links.length === 0) return;
    logger.warn(
      "Other sk_lookup programs are attached to this network namespace: {links}. The kernel runs them in attach order with anyport's, so they can take or refuse steered connections. They can be another anyport that pins into another bpffs or whose pins were removed, or another tool: find them with bpftool link show, and stop that process or detach them",
      {
        links: firstOf(
          links.map((l) => `link ${l.id} (program ${l.programId})`),
          5,
        ),
      },
    );
  }

  /** Returns whether the program's link is still attached to the namespace. */
  #isAttached(): boolean {
    try {
      return this.#state.linkInfo().netnsInode !== 0;
    } catch {
      return false;
    }
  }

  #isReplaced(): boolean {
    const cookie = this.#state.maps.socketCookie();
    return cookie !== undefined && cookie !== this.#cookie;
  }

  /**
   * Notices when steering changed hands. A newer process that took the
   * sockmap over makes this one a drainer. An empty sockmap while this
   * process runs means the owner stopped or died (a rollback), so one of the
   * processes left takes steering back (see {@linkcode #takeBack}) instead
   * of leaving every steered port refused. When an older process took it
   * back first, this one takes it over again. A detached link is logged once.
   */
  #checkOwnership(): void {
    if (this.#closed) return;
    try {
      // While another process has the lock, the next check comes soon.
      const { ran } = this.#state.tryLocked(() => this.#checkOwnershipLocked());
      this.#noteLockWait(ran);
    } catch (error) {
      logger.warn("Cannot check BPF steering ownership: {error}", { error });
    }
  }

  /**
   * Warns once when the ownership checks found the lock taken for
   * {@linkcode LOCK_WARN_MS}: a process that stopped or hung while it held
   * it keeps this one from taking steering back in a rollback.
   */
  #noteLockWait(ran: boolean): void {
    const now = Date.now();
    if (ran) {
      if (this.#lockWarned) {
        logger.info("The lock on the BPF state is free again");
      }
      this.#lockBusySince = undefined;
      this.#lockWarned = false;
      return;
    }
    this.#lockBusySince ??= now;
    if (this.#lockWarned || now - this.#lockBusySince < LOCK_WARN_MS) return;
    this.#lockWarned = true;
    const ms = now - this.#lockBusySince;
    logger.warn("{message}", {
      message: lockHeldMessage(
        this.#state.path,
        ms,
        ", so this one cannot check or take steering",
      ),
      path: this.#state.path,
      ms,
    });
  }

  #checkOwnershipLocked(): void {
    if (this.#state.linkInfo().netnsInode === 0) {
      if (!this.#detachedLogged) {
        logger.error(
          "BPF steering was detached from outside this process, for example by anyport bpf detach: connections to steered ports are refused until anyport restarts",
        );
        this.#detachedLogged = true;
      }
      return;
    }
    const cookie = this.#state.maps.socketCookie();
    if (cookie === undefined) {
      this.#takeBack();
    } else if (this.#replaced && this.#displaced.has(cookie)) {
      this.#retakeFromOlder();
    } else if (cookie !== this.#cookie) {
      this.#owners.add(cookie);
      if (this.#replaced) {
        this.#refillStandby(cookie);
        return;
      }
      this.#replaced = true;
      logger.info(
        "Another anyport process took steering over: this one stands by for a rollback and gets new connections only if that one stops; stop this one to drain it once the newer one serves well",
      );
      this.#standBy();
    } else {
      // The standby socket seen while this one owns steering was replaced
      // by this one or before it, so it is older.
      const standby = this.#state.maps.standbyCookie();
      if (standby !== undefined) this.#displaced.add(standby);
    }
  }

  /**
   * Takes steering back, with this process's ports and prefixes, after the
   * process that owned it stopped. With several processes left, the one
   * replaced last takes it: this one waits while an owner that came after it
   * still listens. The sockmap write succeeds for only one process.
   */
  #takeBack(): void {
    const standby = this.#state.maps.standbyCookie();
    // The process standing by is the one replaced last.
    if (standby !== undefined && standby !== this.#cookie) return;
    if (
      standby === undefined && this.#owners.size > 0 &&
      readLocalListeners().some((listener) => this.#owners.has(listener.cookie))
    ) {
      return;
    }
    if (!this.#state.maps.claimSocket(this.#fd)) return;
    this.#leaveStandby();
    this.#restoreOwnSteering();
    logger.warn(
      "Took steering back: the anyport process that owned it stopped or handed it over; steering this process's {counted} on {prefixes}",
      {
        counted: counted(this.#ports.size, "port"),
        ports: this.#ports.size,
        prefixes: firstOf(
          this.#prefixes.map(formatPrefix),
          MAX_LOGGED_PREFIXES,
        ),
      },
    );
  }

  /**
   * Takes steering over again from a process that this one replaced before.
   * That older process took it back when the owner after this one stopped,
   * because it never saw this one own it (both took over within one
   * ownership check), but of the two, this one came later.
   */
  #retakeFromOlder(): void {
    this.#state.maps.setSocket(this.#fd);
    this.#leaveStandby();
    this.#restoreOwnSteering();
    logger.warn(
      "Took steering back from an older anyport process that took it first",
    );
  }

  /**
   * Makes this socket the standby socket, which the program uses while the
   * sockmap is empty, right after this process was replaced: connections
   * then keep flowing when the owner stops first (a rollback). A standby
   * socket seen while this one owned steering, or one that this one replaced,
   * is older and gives way. One of a newer process, which came within the
   * same ownership check, stays.
   */
  #standBy(): void {
    const standby = this.#state.maps.standbyCookie();
    if (standby !== undefined && !this.#displaced.has(standby)) return;
    this.#state.maps.setStandby(this.#fd);
    logger.debug("Standing by for steering");
  }

  /**
   * Makes this socket the standby socket again once the slot is empty,
   * because the process there took steering back or stopped. A process that
   * owned steering after this one, other than `owner`, and still runs is
   * newer, so it fills the slot instead.
   */
  #refillStandby(owner: bigint): void {
    const standby = this.#state.maps.standbyCookie();
    if (standby !== undefined || !this.#state.maps.has("standby")) return;
    const newer = new Set(this.#owners);
    newer.delete(owner);
    if (
      newer.size > 0 &&
      readLocalListeners().some((listener) => newer.has(listener.cookie))
    ) {
      return;
    }
    this.#state.maps.setStandby(this.#fd);
    logger.debug("Standing by for steering again");
  }

  /**
   * Empties the standby slot when it contains this socket, after this process
   * took steering. Otherwise, when the socket closes, the kernel would empty
   * both slots at once and leave no socket to take the connections.
   */
  #leaveStandby(): void {
    if (this.#state.maps.standbyCookie() === this.#cookie) {
      this.#state.maps.removeStandby();
    }
  }

  /**
   * Writes this process's ports and prefixes, after its socket went in, and
   * puts its program back into the link in place of the stopped process's.
   */
  #restoreOwnSteering(): void {
    this.#owners.clear();
    this.#replaced = false;
    this.#writeSteering(this.#ports, this.#prefixes);
    try {
      this.#state.installProgram();
    } catch (error) {
      logger.warn(
        "Cannot put this process's BPF program back into the link: {error}. The stopped process's program keeps steering",
        { error },
      );
    }
  }

  /**
   * Makes the maps steer exactly `ports` and `prefixes`, whatever they hold
   * now, such as another process's ports.
   */
  #writeSteering(ports: ReadonlySet<number>, prefixes: readonly Prefix[]) {
    const present = this.#state.maps.readPorts();
    this.#state.maps.addPorts([...ports].filter((p) => !present.has(p)));
    this.#state.maps.removePorts([...present].filter((p) => !ports.has(p)));
    this.#writePrefixes(prefixes, this.#state.maps.readPrefixes());
  }

  #dispatch(fd: number, peer: SocketAddress | undefined): void {
    this.#lastAccept = Date.now();
    // A replaced process gets connections only as the standby, after the
    // owner left. It takes steering back now rather than at the next check,
    // so that ports that only the owner served are refused again at once.
    if (this.#replaced && !this.#closed) this.#checkOwnership();
    localLength[0] = SOCKADDR_SIZE;
    const local = net().getsockname(fd, localBuffer, localLengthBytes) < 0
      ? undefined
      : decodeSockAddr(localBuffer);
    if (local === undefined) {
      // The client is gone already; nothing to route.
      net().close(fd);
      return;
    }
    if (local.port === this.addr.port && !this.#isSteered(local)) {
      // A direct connection to the socket's own port, not a steered one.
      const suppressed = limiter.allow("direct connections", Date.now());
      if (suppressed >= 0) {
        logger.info(
          withSuppressed(
            "Closed a connection from {client} to the proxy socket's own port {port}: it serves steered connections only",
            suppressed,
          ),
          { client: peer?.label ?? "-", port: local.port, suppressed },
        );
      }
      net().close(fd);
      return;
    }
    try {
      this.#onConn(fd, local.port, peer, local);
    } catch (error) {
      // A handler that throws has not taken the descriptor over.
      logger.warn("Handler failed for {client} on port {port}: {error}", {
        client: peer?.label ?? "-",
        port: local.port,
        error,
      });
      net().close(fd);
    }
  }

  #isSteered(local: SocketAddress): boolean {
    const address = local.plainAddress;
    return this.#ports.has(local.port) &&
      this.#prefixes.some((prefix) => prefixContains(prefix, address));
  }

  async #drain(): Promise<void> {
    const start = Date.now();
    this.#lastAccept = Math.max(this.#lastAccept, start);
    while (
      Date.now() - this.#lastAccept < DRAIN_IDLE_MS &&
      Date.now() - start < DRAIN_MAX_MS
    ) {
      await new Promise((resolve) => setTimeout(resolve, DRAIN_IDLE_MS / 4));
    }
  }

  #checkOpen(action: string): void {
    if (this.#closed) {
      throw new Error(`Cannot ${action}: the BPF frontend is closed`);
    }
  }
}

const localBuffer = new Uint8Array(SOCKADDR_SIZE);
const localLength = new Uint32Array(1);
const localLengthBytes = new Uint8Array(localLength.buffer);

function sameBytes(a: ArrayLike<number>, b: ArrayLike<number>): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function isIpv6(prefix: Prefix): boolean {
  return prefix.family === 6;
}
