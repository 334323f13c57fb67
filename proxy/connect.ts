import { getLogger } from "@logtape/logtape";
import type { App } from "./app.ts";
import {
  DialCancelled,
  type DialControl,
  type DialError,
  dialTarget,
} from "./dial.ts";
import { type EventLoop, Watched } from "./event_loop.ts";
import { closeWithReset, EADDRNOTAVAIL } from "../ffi/net.ts";
import { isResourceExhausted, osErrno } from "./os_error.ts";
import { LogRateLimiter, withSuppressed } from "./rate_limit.ts";
import type { Resolver } from "./resolver.ts";
import type { Settings } from "./settings.ts";
import type { TargetState } from "./target_state.ts";

const log = getLogger(["anyport", "target"]);
const limiter = new LogRateLimiter();

/** Established connection to one of an app's targets. */
export interface TargetConn {
  /** The connected socket, watched by the loop with no handler yet. */
  conn: Watched;
  target: TargetState;
  /** Connect attempts made, including the one that succeeded. */
  attempts: number;
}

/**
 * Connects to one of the app's targets, in the balancer's order, trying the
 * next target after each failure until one accepts or all were tried.
 * Failed targets go into back-off; a target that accepts again is logged
 * as back up.
 *
 * @param client returns the client address, for the logs
 * @param control cancels the connect, and the tries of further targets
 * @param done gets the connection, or `undefined` when no target could be
 * reached or `control` was cancelled. A second argument, `"out of
 * resources"`, means that the proxy ran out of descriptors or memory. It may
 * be called before this returns.
 */
export function connectToApp(
  app: App,
  settings: Settings,
  resolver: Resolver,
  loop: EventLoop,
  client: () => string,
  control: DialControl | undefined,
  done: (
    connected: TargetConn | undefined,
    failure?: "out of resources",
  ) => void,
): void {
  const candidates = app.balancer.order(app.targets, Date.now());
  let index = 0;
  const next = (): void => {
    const target = candidates[index];
    if (target === undefined || control?.cancelled) return done(undefined);
    index++;
    // Tried before its back-off ends, because no target of the app is up.
    const early = target.isDown(Date.now());
    const mark = target.beginConnect();
    if (control !== undefined) {
      control.target = target.address.label;
      control.looped = false;
    }
    target.connecting++;
    dialTarget(
      target.address,
      settings,
      resolver,
      loop,
      control,
      (result) => {
        target.connecting--;
        if (result instanceof Watched && control?.looped) {
          // The accept side put the target into back-off and reset the
          // other end already. The client goes to the next target.
          loop.release(result.fd);
          closeWithReset(result.fd);
          target.cancelConnect(mark);
          return next();
        }
        if (result instanceof Watched) {
          if (target.recordSuccess()) {
            log.info("Target {target} of app {app} is back up", {
              app: app.name,
              target: target.address.label,
            });
            // After an outage of the whole app, such as a restart of every
            // target, the others are likely back too: probe them now.
            if (early) {
              const now = Date.now();
              for (const other of app.targets) other.endBackoff(now);
            }
          }
          return done({ conn: result, target, attempts: index });
        }
        if (result instanceof DialCancelled) {
          // The client is gone; the target is not to blame.
          target.cancelConnect(mark);
          return done(undefined);
        }
        if (isResourceExhausted(result.cause)) {
          // The proxy itself is out of descriptors or memory: the target is
          // not to blame, and the other targets would fail the same way.
          target.cancelConnect(mark);
          logResourceError(app, target, result, client);
          return done(undefined, "out of resources");
        }
        if (early) {
          target.recordEarlyFailure();
          logFailure(app, target, result, client, index < candidates.length);
          return next();
        }
        if (target.startedBeforeBackoff(mark)) {
          // Another connect put the target into back-off while this one
          // was in flight, so the back-off stays as it is.
          logFailure(app, target, result, client, index < candidates.length);
          return next();
        }
        const wasUp = target.failures === 0;
        const period = target.recordFailure(
          Date.now(),
          settings.backoffMs,
          settings.maxBackoffMs,
        );
        logFailure(app, target, result, client, index < candidates.length);
        if (wasUp) {
          log.warning(
            "Target {target} of app {app} marked down for {backoffMs} ms",
            { app: app.name, target: target.address.label, backoffMs: period },
          );
        } else {
          // A failed probe: the back-off grew, once per period at most.
          logStillDown(app, target, period);
        }
        next();
      },
    );
  };
  next();
}

function logResourceError(
  app: App,
  target: TargetState,
  error: DialError,
  client: () => string,
) {
  const noPort = osErrno(error.cause) === EADDRNOTAVAIL;
  const suppressed = limiter.allow(
    noPort ? "connects without a local port" : "connects without resources",
    Date.now(),
  );
  if (suppressed < 0) return;
  const message = noPort
    ? "Cannot connect to target {target} of app {app}: no local port towards it is free ({reason}); widen net.ipv4.ip_local_port_range, set net.ipv4.tcp_tw_reuse to 1, or add target addresses"
    : "Cannot connect to target {target} of app {app}: the proxy is out of resources ({reason}); raise the descriptor limit (ulimit -n) or add capacity";
  log.error(
    withSuppressed(message, suppressed),
    {
      app: app.name,
      target: target.address.label,
      reason: error.reason,
      client: client(),
      suppressed,
    },
  );
}

function logStillDown(app: App, target: TargetState, period: number) {
  const suppressed = limiter.allow(
    `probes of target ${target.address.label} of app "${app.name}"`,
    Date.now(),
  );
  if (suppressed < 0) return;
  log.info(
    withSuppressed(
      "Target {target} of app {app} still down; back-off now {backoffMs} ms",
      suppressed,
    ),
    {
      app: app.name,
      target: target.address.label,
      backoffMs: period,
      suppressed,
    },
  );
}

function logFailure(
  app: App,
  target: TargetState,
  error: DialError,
  client: () => string,
  failover: boolean,
) {
  const suppressed = limiter.allow(
    `connects to target ${target.address.label} of app "${app.name}"`,
    Date.now(),
  );
  if (suppressed < 0) return;
  const message = failover
    ? "Connect to target {target} of app {app} failed: {reason}; trying the next target"
    : "Connect to target {target} of app {app} failed: {reason}; no target left to try";
  log.warning(withSuppressed(message, suppressed), {
    app: app.name,
    target: target.address.label,
    reason: error.reason,
    client: client(),
    suppressed,
  });
}
