import type { App } from "./app.ts";
import type { PortRange } from "./frontend.ts";
import { mergeRanges } from "./ports.ts";

interface Route extends PortRange {
  app: App;
}

/** Lookup from a destination port to the app that owns it. */
export class Router {
  readonly #routes: Route[];

  /** @param apps apps whose port ranges do not overlap (the config checks this) */
  constructor(apps: Iterable<App>) {
    this.#routes = [];
    for (const app of apps) {
      for (const range of app.config.ports) {
        this.#routes.push({ ...range, app });
      }
    }
    this.#routes.sort((a, b) => a.first - b.first);
  }

  /** Returns the app that owns `port`, or `undefined`. */
  route(port: number): App | undefined {
    let low = 0;
    let high = this.#routes.length - 1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      const route = this.#routes[mid]!;
      if (port < route.first) high = mid - 1;
      else if (port > route.last) low = mid + 1;
      else return route.app;
    }
    return undefined;
  }

  /** Returns every routed port, as sorted ranges with neighbours merged. */
  ranges(): PortRange[] {
    return mergeRanges(this.#routes);
  }
}
