import type { AppConfig } from "./config.ts";
import { Balancer } from "./balancer.ts";
import type { Settings } from "./settings.ts";
import { TargetState } from "./target_state.ts";

/** Connections of an app open at once, shared by its versions across reloads. */
export class OpenCount {
  value = 0;
}

/** Runtime state of one app: its targets with their health, and a balancer. */
export class App {
  readonly config: AppConfig;
  /** The targets of the app's config, in order. */
  readonly ownTargets: readonly TargetState[];
  /**
   * The targets that connections go to: the app's own, with each target
   * that is another app's port on this proxy replaced by that app's
   * targets; see {@linkcode App.resolveAliases}.
   */
  targets: readonly TargetState[];
  readonly balancer: Balancer;
  /**
   * Open connections of the app, counted against its `MaxConnections`. A
   * reload keeps the count, and connections accepted before it still end
   * in it.
   */
  readonly open: OpenCount;

  /**
   * @param previous the app's state before a reload; targets with the same
   * address keep their connection counts and health
   */
  constructor(config: AppConfig, settings: Settings, previous?: App) {
    this.config = config;
    this.balancer = new Balancer(config.balance ?? settings.balance);
    const old = new Map(
      previous?.ownTargets.map((t) => [t.address.label, t]),
    );
    this.ownTargets = config.targets.map((address) =>
      old.get(address.label) ?? new TargetState(address)
    );
    this.targets = this.ownTargets;
    this.open = previous?.open ?? new OpenCount();
  }

  /** Returns whether the app has as many connections open as it may. */
  get full(): boolean {
    const max = this.config.maxConnections;
    return max !== undefined && this.open.value >= max;
  }

  get name(): string {
    return this.config.name;
  }

  /**
   * Replaces each target that `ownerOf` finds to be another app's port on
   * this proxy with that app's targets, through further such apps too. A
   * connection then goes straight to the server and takes one connection
   * slot instead of two. Through the proxy's own port it would wait, at the
   * connection limit, for an accept that the paused listeners do not make.
   * Targets shared that way keep one health state.
   */
  resolveAliases(ownerOf: (target: TargetState) => App | undefined): void {
    const seen = new Set<App>([this]);
    const expand = (app: App): TargetState[] =>
      app.ownTargets.flatMap((target) => {
        const owner = ownerOf(target);
        if (owner === undefined) return [target];
        // The config check rejects loops; this guards against them anyway.
        if (seen.has(owner)) return [];
        seen.add(owner);
        return expand(owner);
      });
    this.targets = [...new Set(expand(this))];
  }
}
