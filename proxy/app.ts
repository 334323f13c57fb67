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
  readonly targets: readonly TargetState[];
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
    const old = new Map(previous?.targets.map((t) => [t.address.label, t]));
    this.targets = config.targets.map((address) =>
      old.get(address.label) ?? new TargetState(address)
    );
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
}
