import { getLogger } from "@logtape/logtape";
import { App } from "./app.ts";
import { counted } from "./plural.ts";
import type { Config } from "./config.ts";
import { connectToApp, type TargetConn } from "./connect.ts";
import type { Frontend } from "./frontend.ts";
import { Pipe, type PipeResult } from "./pipe.ts";
import { LogRateLimiter, withSuppressed } from "./rate_limit.ts";
import { Resolver } from "./resolver.ts";
import { Router } from "./router.ts";
import { describeChanges } from "./config_diff.ts";
import { Session } from "./session.ts";
import { SlotSet } from "./slot_set.ts";
import { EventLoop } from "./event_loop.ts";
import type { ConnHandler } from "./frontend.ts";
import {
  closeWithReset,
  descriptorLimit,
  net,
  receiveQueueBytes,
} from "../ffi/net.ts";
import {
  ConnectionLimit,
  defaultMaxConnections,
  limitWarning,
} from "./connection_limit.ts";
import type { SocketAddress } from "./sockaddr.ts";
import { type LoopedTarget, SelfConnections } from "./self_connect.ts";
import { parseAddress } from "./prefix.ts";
import { reachesProxy } from "./loop_check.ts";
import { accessLogEnabled, writeAccessLine } from "./access_log.ts";

const log = getLogger(["anyport"]);
const limiter = new LogRateLimiter();

/** Chain of a connection from outside the proxy; see {@linkcode Session.chain}. */
const NO_CHAIN: readonly string[] = [];

/**
 * Apps that one client connection may go through, one target pointing at
 * the next, before the proxy takes it for a loop that the config check
 * could not see, such as one through a name that resolves to this host.
 */
const MAX_CHAIN = 8;

/**
 * Creates the frontend for a config; it accepts through `loop` and calls
 * `onConn` per connection.
 */
export type FrontendFactory = (
  config: Config,
  loop: EventLoop,
  onConn: ConnHandler,
) => Frontend | Promise<Frontend>;

/**
 * The proxy: routes each accepted connection by its destination port to an
 * app, connects to one of the app's targets and pipes bytes both ways.
 */
export class Proxy {
  #config: Config;
  #apps: Map<string, App>;
  #router: Router;
  #frontend: Frontend | undefined;
  readonly #sessions = new SlotSet<Session>();
  #limit: ConnectionLimit | undefined;
  /** Set when {@linkcode stop} begins, before the frontend closes. */
  #closing = false;
  readonly #resolver = new Resolver();
  readonly #loop: EventLoop;
  #stopping = false;
  #idleTimer: ReturnType<typeof setInterval> | undefined;
  /** Target connections to the proxy's own port numbers, to catch loops. */
  readonly #self = new SelfConnections((port) =>
    this.#router.route(port) !== undefined
  );

  private constructor(config: Config) {
    this.#config = config;
    this.#apps = buildApps(config);
    this.#router = new Router(this.#apps.values());
    this.#loop = new EventLoop();
  }

  /**
   * Starts a proxy for `config`: opens the frontend and starts accepting.
   *
   * @throws {Error} when the frontend cannot open, such as a port in use,
   * or without the `ffi` permission, which the data path needs
   */
  static async start(
    config: Config,
    createFrontend: FrontendFactory,
  ): Promise<Proxy> {
    const proxy = new Proxy(config);
    proxy.#loop.start();
    let frontend: Frontend | undefined;
    try {
      frontend = await createFrontend(config, proxy.#loop, proxy.#onConn);
      proxy.#frontend = frontend;
      await frontend.apply(
        proxy.#router.ranges(),
        config.settings.steerPrefixes,
      );
    } catch (error) {
      await frontend?.close();
      await proxy.#loop.stop();
      throw error;
    }
    proxy.#limit = new ConnectionLimit(
      proxy.#maxConnections(config, frontend),
      () => frontend.pause(),
      () => frontend.resume(),
    );
    proxy.#warnOfLimit(frontend);
    proxy.#startIdleTimer();
    proxy.#resolveTargets();
    return proxy;
  }

  /** The config in force. */
  get config(): Config {
    return this.#config;
  }

  /** Connections accepted and not yet closed. */
  get connections(): number {
    return this.#sessions.size;
  }

  /** Connections open at once beyond which the proxy stops accepting. */
  get maxConnections(): number {
    return this.#limit?.max ?? 0;
  }

  /**
   * Applies a new config as a diff: new ports start accepting, removed ports
   * stop, and target changes apply to new connections. Established
   * connections keep running untouched.
   *
   * @returns a description of each change, empty when nothing changed
   * @throws {Error} when the new config cannot be applied, for example a
   * new port in use or a changed `Mode`; the old config stays in force
   */
  async reload(config: Config): Promise<string[]> {
    const changes = describeChanges(this.#config, config);
    const old = this.#config.settings;
    const fixed: string[] = [];
    if (config.settings.mode !== old.mode) {
      fixed.push(`Mode (${old.mode} -> ${config.settings.mode})`);
    }
    // BPF mode has one socket on a fixed address, so ListenAddress is unused.
    if (
      old.mode === "listeners" &&
      !sameAddress(config.settings.listenAddress, old.listenAddress)
    ) {
      fixed.push(
        `ListenAddress (${old.listenAddress} -> ${config.settings.listenAddress})`,
      );
    }
    if (fixed.length > 0) {
      throw new Error(
        `Cannot change ${
          fixed.join(" or ")
        } on reload, so no change in the file was applied: restart the proxy to apply that change`,
      );
    }
    const previous = {
      config: this.#config,
      apps: this.#apps,
      router: this.#router,
    };
    const apps = buildApps(config, previous.apps);
    const router = new Router(apps.values());
    let installed = false;
    const install = () => {
      installed = true;
      this.#config = config;
      this.#apps = apps;
      this.#router = router;
    };
    try {
      await this.#frontend?.apply(
        router.ranges(),
        config.settings.steerPrefixes,
        install,
      );
      if (!installed) install();
    } catch (error) {
      this.#config = previous.config;
      this.#apps = previous.apps;
      this.#router = previous.router;
      throw error;
    }
    if (this.#frontend !== undefined && this.#limit !== undefined) {
      const before = this.#limit.max;
      const after = this.#maxConnections(config, this.#frontend);
      this.#limit.setMax(after, this.#sessions.size);
      if (after !== before && config.settings.maxConnections === undefined) {
        changes.push(
          `connection limit from the open-file limit: ${before} -> ${after}`,
        );
      }
      this.#warnOfLimit(this.#frontend);
    }
    this.#startIdleTimer();
    this.#resolveTargets();
    return changes;
  }

  /**
   * Stops accepting, waits up to the drain timeout for open connections to
   * finish, then closes the rest.
   *
   * @param force ends the drain early when it aborts
   * @returns the number of connections closed at the end of the drain
   */
  async stop(force?: AbortSignal): Promise<number> {
    this.#closing = true;
    clearInterval(this.#idleTimer);
    // In BPF mode, closing first accepts the connections already steered to
    // this process, and those are served, not closed.
    await this.#frontend?.close();
    this.#stopping = true;
    const drained = Promise.all(this.#sessions.toArray().map((s) => s.done));
    let timer: ReturnType<typeof setTimeout> | undefined;
    let onForce: (() => void) | undefined;
    const cutoff = new Promise<"cutoff">((resolve) => {
      timer = setTimeout(
        () => resolve("cutoff"),
        this.#config.settings.drainTimeoutMs,
      );
      onForce = () => resolve("cutoff");
      force?.addEventListener("abort", onForce, { once: true });
      if (force?.aborted) resolve("cutoff");
    });
    const outcome = await Promise.race([drained, cutoff]);
    clearTimeout(timer);
    if (onForce !== undefined) force?.removeEventListener("abort", onForce);
    let aborted = 0;
    if (outcome === "cutoff") {
      const remaining = this.#sessions.toArray();
      for (const session of remaining) session.abort();
      await Promise.all(remaining.map((s) => s.done));
      aborted = remaining.length;
    }
    await this.#loop.stop();
    return aborted;
  }

  #onConn = (
    fd: number,
    port: number,
    peer: SocketAddress | undefined,
    local?: SocketAddress,
  ): void => {
    if (this.#stopping) {
      net().close(fd);
      return;
    }
    let chain = NO_CHAIN;
    if (peer !== undefined && this.#self.size > 0) {
      const looped = this.#self.take(peer);
      const next = looped && this.#router.route(port);
      if (
        looped !== undefined && next !== undefined &&
        !looped.chain.includes(next.name) && looped.chain.length < MAX_CHAIN
      ) {
        // One app's target is another app of this proxy: a chain that the
        // config check allows, such as an old port kept as an alias.
        chain = looped.chain;
      } else if (looped !== undefined) {
        // The reset reaches the proxy's own target socket and ends the loop
        // there, after one round.
        closeWithReset(fd);
        looped.dial.looped = true;
        this.#markLoopDown(looped);
        this.#logLoop(looped, port);
        return;
      }
    }
    const app = this.#router.route(port);
    if (app === undefined) {
      this.#logRejected(peer, port);
      net().close(fd);
      return;
    }
    if (app.full) {
      closeWithReset(fd);
      this.#logAppFull(app);
      if (accessLogEnabled()) {
        writeAccessLine({
          client: peer?.label ?? "-",
          destination: local?.label,
          app: app.name,
          port,
          target: "-",
          end: "reset at the app's MaxConnections",
          sent: 0,
          received: 0,
          durationMs: 0,
        });
      }
      return;
    }
    let client;
    try {
      client = this.#loop.watch(fd);
    } catch (error) {
      net().close(fd);
      log.error("Cannot serve {client} on port {port}: {error}", {
        client: peer?.label ?? "-",
        port,
        error: (error as Error).message,
      });
      return;
    }
    const session = new Session(
      this.#loop,
      client,
      peer,
      port,
      app,
      chain,
      local,
    );
    this.#sessions.add(session);
    app.open.value++;
    this.#limit?.update(this.#sessions.size);
    // Until the pipe takes the client over, only a reset matters: a client
    // that sent its request and a FIN still gets the reply. Bytes sent before
    // the reset still go to the target, so then the connect goes on.
    client.handler = (watched) => {
      if (watched.failed && receiveQueueBytes(watched.fd) === 0) {
        session.resetByClient();
      }
    };
    session.dial.onConnect = (targetFd, targetPort) =>
      this.#self.noteConnect(targetFd, targetPort, () => ({
        app: app.name,
        chain: [...session.chain, app.name],
        target: session.dial.target ?? "-",
        dial: session.dial,
      }));
    connectToApp(
      app,
      this.#config.settings,
      this.#resolver,
      this.#loop,
      () => session.clientLabel,
      session.dial,
      (connected, failure) => this.#serve(session, connected, failure),
    );
  };

  /** Forgets a finished session, which may let the listeners accept again. */
  #end(session: Session): void {
    session.finish();
    if (this.#sessions.delete(session)) session.app.open.value--;
    // A stopping proxy accepts nothing more, whatever the count.
    if (!this.#closing) this.#limit?.update(this.#sessions.size);
  }

  /** Warns when the connection limit does not fit the open-file limit. */
  #warnOfLimit(frontend: Frontend): void {
    const warning = limitWarning(
      this.#limit?.max ?? 0,
      descriptorLimit(),
      frontend.socketCount,
      this.#config.settings.maxConnections === undefined,
    );
    if (warning !== undefined) log.warn(warning);
  }

  /** Returns `MaxConnections`, or the default for the open-file limit. */
  #maxConnections(config: Config, frontend: Frontend): number {
    return config.settings.maxConnections ??
      defaultMaxConnections(descriptorLimit(), frontend.socketCount);
  }

  /** Pipes a session to its target, or ends it when there is none. */
  #serve(
    session: Session,
    connected: TargetConn | undefined,
    failure?: "out of resources",
  ): void {
    if (connected === undefined || session.aborted || session.clientReset) {
      if (connected !== undefined) {
        // A FIN would tell the target that an empty request ended complete.
        this.#loop.release(connected.conn.fd);
        closeWithReset(connected.conn.fd);
      }
      this.#end(session);
      this.#logAccess(
        session,
        undefined,
        session.clientReset
          ? "client reset"
          : session.aborted
          ? "aborted"
          : failure ?? "no target",
      );
      return;
    }
    const { conn, target } = connected;
    target.active++;
    const pipe = new Pipe(this.#loop, session.client, conn, (result) => {
      target.active--;
      this.#end(session);
      // For a target given by name, the address it connected through.
      const address = session.dial.address;
      const via = address === undefined
        ? target.address.label
        : `${target.address.label} (${address})`;
      this.#logAccess(session, via, result.end, result);
    });
    session.pipe = pipe;
    pipe.start();
  }

  /**
   * Looks up every target host name in the background, so the first
   * connection does not wait for DNS, and marks targets whose name does not
   * resolve as down before any client is sent there.
   */
  #resolveTargets() {
    const names = new Set<string>();
    const settings = this.#config.settings;
    for (const app of this.#apps.values()) {
      for (const target of app.targets) {
        names.add(target.address.hostname);
        this.#resolver.resolve(target.address.hostname).catch((error) => {
          if (target.failures > 0) return;
          const period = target.recordFailure(
            Date.now(),
            settings.backoffMs,
            settings.maxBackoffMs,
          );
          log.warning(
            "Target {target} of app {app} marked down for {backoffMs} ms: {reason}",
            {
              app: app.name,
              target: target.address.label,
              backoffMs: period,
              reason: (error as Error).message,
            },
          );
        });
      }
    }
    this.#resolver.retain(names);
  }

  #logAccess(
    session: Session,
    target: string | undefined,
    end: string,
    pipe?: PipeResult,
  ) {
    if (!accessLogEnabled()) return;
    writeAccessLine({
      client: session.clientLabel,
      destination: session.local?.label,
      app: session.app.name,
      port: session.port,
      target: target ?? "-",
      end,
      sent: pipe?.sent ?? 0,
      received: pipe?.received ?? 0,
      durationMs: Date.now() - session.started,
    });
  }

  /**
   * Puts a looping target into back-off, so that the next clients go to the
   * app's other targets instead of starting another round.
   */
  #markLoopDown(looped: LoopedTarget) {
    const target = this.#apps.get(looped.app)?.targets.find((t) =>
      t.address.label === looped.target
    );
    if (target === undefined || target.failures > 0) return;
    const settings = this.#config.settings;
    target.recordFailure(
      Date.now(),
      settings.backoffMs,
      settings.maxBackoffMs,
    );
  }

  #logAppFull(app: App) {
    const suppressed = limiter.allow(`limit of app "${app.name}"`, Date.now());
    if (suppressed < 0) return;
    log.warning(
      withSuppressed(
        "App {app} is at its MaxConnections of {max} ({counted} open): new connections to it are reset until some close. Raise its MaxConnections if this load is normal",
        suppressed,
      ),
      {
        app: app.name,
        max: app.config.maxConnections,
        counted: counted(app.open.value, "connection"),
        open: app.open.value,
        suppressed,
      },
    );
  }

  #logLoop(looped: LoopedTarget, port: number) {
    const suppressed = limiter.allow(
      `loops through target ${looped.target}`,
      Date.now(),
    );
    if (suppressed < 0) return;
    log.error(
      withSuppressed(
        "Target {target} of app {app} leads back to this proxy along {loop}: the looping connection was reset and the target put into back-off; point the target at the server instead",
        suppressed,
      ),
      {
        target: looped.target,
        app: looped.app,
        port,
        loop: [...looped.chain, `port ${port}`].join(" -> "),
        suppressed,
      },
    );
  }

  #logRejected(peer: SocketAddress | undefined, port: number) {
    const suppressed = limiter.allow(
      `connections to unowned port ${port}`,
      Date.now(),
    );
    if (suppressed < 0) return;
    log.warning(
      withSuppressed(
        "Closed connection from {client} to port {port}: no app owns the port",
        suppressed,
      ),
      {
        client: peer?.label ?? "-",
        port,
        suppressed,
      },
    );
  }

  /**
   * Checks for idle connections every quarter of the shorter of the idle
   * timeouts, at most each second. A connection whose one side sent its FIN
   * has the half-close timeout.
   */
  #startIdleTimer() {
    clearInterval(this.#idleTimer);
    const { idleTimeoutMs, halfCloseTimeoutMs } = this.#config.settings;
    const idleMs = idleTimeoutMs;
    const halfMs = halfCloseTimeoutMs ?? idleTimeoutMs;
    const shortest = Math.min(...[idleMs, halfMs].filter((ms) => ms > 0));
    if (!Number.isFinite(shortest)) return;
    const interval = Math.max(10, Math.min(1_000, shortest / 4));
    this.#idleTimer = setInterval(() => {
      const now = Date.now();
      const quiet = now - interval;
      for (const session of this.#sessions.toArray()) {
        const pipe = session.pipe;
        if (pipe === undefined || pipe.lastActive >= quiet) continue;
        const ms = pipe.halfClosed ? halfMs : idleMs;
        if (ms > 0) pipe.checkIdle(now, now - ms);
      }
    }, interval);
    Deno.unrefTimer(this.#idleTimer as unknown as number);
  }
}

function buildApps(
  config: Config,
  previous?: Map<string, App>,
): Map<string, App> {
  const apps = new Map<string, App>();
  for (const appConfig of config.apps) {
    const app = new App(
      appConfig,
      config.settings,
      previous?.get(appConfig.name),
    );
    apps.set(app.name, app);
  }
  // A target that is another app's port here, written as an address that
  // reaches this proxy, is that app: see App.resolveAliases.
  const byPort = new Router(apps.values());
  for (const app of apps.values()) {
    app.resolveAliases((target) =>
      reachesProxy(target.address.hostname, config.settings)
        ? byPort.route(target.address.port)
        : undefined
    );
  }
  return apps;
}

/** Returns whether two addresses are the same, however they are spelled. */
function sameAddress(a: string, b: string): boolean {
  if (a === b) return true;
  const left = parseAddress(a);
  const right = parseAddress(b);
  return left !== undefined && right !== undefined &&
    left.length === right.length && left.every((byte, i) => byte === right[i]);
}
