import { getLogger } from "@logtape/logtape";
import { App } from "./app.ts";
import type { Config } from "./config.ts";
import { connectToApp } from "./connect.ts";
import type { Frontend } from "./frontend.ts";
import { Pipe } from "./pipe.ts";
import { LogRateLimiter, withSuppressed } from "./rate_limit.ts";
import { Resolver } from "./resolver.ts";
import { Router } from "./router.ts";
import { describeChanges } from "./config_diff.ts";
import { Session } from "./session.ts";
import { formatAddr } from "./address.ts";

const log = getLogger(["anyport"]);
const accessLog = getLogger(["anyport", "access"]);
const limiter = new LogRateLimiter();

/** Creates the frontend for a config; it calls `onConn` per connection. */
export type FrontendFactory = (
  config: Config,
  onConn: (conn: Deno.TcpConn, port: number) => void,
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
  readonly #sessions = new Set<Session>();
  readonly #resolver = new Resolver();
  #stopping = false;
  #idleTimer: ReturnType<typeof setInterval> | undefined;

  private constructor(config: Config) {
    this.#config = config;
    this.#apps = buildApps(config);
    this.#router = new Router(this.#apps.values());
  }

  /**
   * Starts a proxy for `config`: opens the frontend and starts accepting.
   *
   * @throws {Error} when the frontend cannot open, such as a port in use
   */
  static async start(
    config: Config,
    createFrontend: FrontendFactory,
  ): Promise<Proxy> {
    const proxy = new Proxy(config);
    const frontend = await createFrontend(config, proxy.#onConn);
    proxy.#frontend = frontend;
    try {
      await frontend.apply(proxy.#router.ranges());
    } catch (error) {
      await frontend.close();
      throw error;
    }
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
    for (const key of ["mode", "listenAddress"] as const) {
      if (config.settings[key] !== old[key]) {
        throw new Error(
          `Cannot change ${
            key === "mode" ? "Mode" : "ListenAddress"
          } on reload: restart the proxy to apply it`,
        );
      }
    }
    const previous = {
      config: this.#config,
      apps: this.#apps,
      router: this.#router,
    };
    this.#config = config;
    this.#apps = buildApps(config, previous.apps);
    this.#router = new Router(this.#apps.values());
    try {
      await this.#frontend?.apply(this.#router.ranges());
      await this.#frontend?.setPrefixes?.(config.settings.steerPrefixes);
    } catch (error) {
      this.#config = previous.config;
      this.#apps = previous.apps;
      this.#router = previous.router;
      throw error;
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
    this.#stopping = true;
    clearInterval(this.#idleTimer);
    await this.#frontend?.close();
    const drained = Promise.all([...this.#sessions].map((s) => s.done));
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
    if (outcome !== "cutoff") return 0;
    const remaining = [...this.#sessions];
    for (const session of remaining) session.abort();
    await Promise.all(remaining.map((s) => s.done));
    return remaining.length;
  }

  #onConn = (conn: Deno.TcpConn, port: number): void => {
    if (this.#stopping) {
      conn.close();
      return;
    }
    const app = this.#router.route(port);
    if (app === undefined) {
      this.#logRejected(conn, port);
      conn.close();
      return;
    }
    const session = new Session(conn, port, app);
    this.#sessions.add(session);
    this.#serve(session).finally(() => this.#sessions.delete(session));
  };

  async #serve(session: Session): Promise<void> {
    const { client, app } = session;
    const settings = this.#config.settings;
    try {
      client.setNoDelay(true);
    } catch {
      // The client may already be gone; the pipe will see it.
    }
    const connected = await connectToApp(
      app,
      settings,
      this.#resolver,
      () => session.clientLabel,
    );
    if (connected === undefined || session.aborted) {
      connected?.conn.close();
      session.finish();
      this.#logAccess(session, undefined, "no target");
      return;
    }
    const { conn, target } = connected;
    try {
      conn.setNoDelay(true);
    } catch {
      // As above.
    }
    target.active++;
    const pipe = new Pipe(client, conn);
    session.pipe = pipe;
    const result = await pipe.done;
    target.active--;
    session.finish();
    this.#logAccess(session, target.address.label, result.end, pipe);
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
    pipe?: Pipe,
  ) {
    if (!accessLog.isEnabledFor("info")) return;
    accessLog.info(
      "{client} -> {app}:{port} via {target}: {end}, {sent} B sent, {received} B received, {durationMs} ms",
      {
        client: session.clientLabel,
        app: session.app.name,
        port: session.port,
        target: target ?? "-",
        end,
        sent: pipe?.sent ?? 0,
        received: pipe?.received ?? 0,
        durationMs: Date.now() - session.started,
      },
    );
  }

  #logRejected(conn: Deno.TcpConn, port: number) {
    const suppressed = limiter.allow(`port:${port}`, Date.now());
    if (suppressed < 0) return;
    log.warning(
      withSuppressed(
        "Closed connection from {client} to port {port}: no app owns the port",
        suppressed,
      ),
      {
        client: formatAddr(conn.remoteAddr),
        port,
        suppressed,
      },
    );
  }

  /** Checks for idle connections every quarter of the idle timeout, at most each second. */
  #startIdleTimer() {
    clearInterval(this.#idleTimer);
    const idleMs = this.#config.settings.idleTimeoutMs;
    if (idleMs === 0) return;
    const interval = Math.max(10, Math.min(1_000, idleMs / 4));
    this.#idleTimer = setInterval(() => {
      const cutoff = Date.now() - idleMs;
      for (const session of this.#sessions) {
        const pipe = session.pipe;
        if (pipe !== undefined && pipe.lastActive < cutoff) pipe.expire();
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
  return apps;
}
