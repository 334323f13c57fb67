import type { App } from "./app.ts";
import type { PortRange } from "./frontend.ts";
import { mergeRanges } from "./ports.ts";

interface Entry<T> extends PortRange {
  item: T;
}

/**
 * Lookup from a port to the item whose port ranges contain it, by binary
 * search over the sorted ranges, so 10,000 ranges cost no more than 14 steps.
 */
export class PortIndex<T> {
  readonly #entries: Entry<T>[] = [];

  /**
   * @param items items whose port ranges do not overlap (the config checks
   * this)
   */
  constructor(
    items: Iterable<T>,
    rangesOf: (item: T) => readonly PortRange[],
  ) {
    for (const item of items) {
      for (const range of rangesOf(item)) {
        this.#entries.push({ first: range.first, last: range.last, item });
      }
    }
    this.#entries.sort((a, b) => a.first - b.first);
  }

  /** Returns the item whose ranges contain `port`, or `undefined`. */
  find(port: number): T | undefined {
    let low = 0;
    let high = this.#entries.length - 1;
    while (low <= high) {
      const mid = (low + high) >> 1;
      const entry = this.#entries[mid]!;
      if (port < entry.first) high = mid - 1;
      else if (port > entry.last) low = mid + 1;
      else return entry.item;
    }
    return undefined;
  }

  /** Returns every port of the items, as sorted ranges with neighbours merged. */
  ranges(): PortRange[] {
    return mergeRanges(this.#entries);
  }
}

/** Lookup from a destination port to the app that owns it. */
export class Router extends PortIndex<App> {
  constructor(apps: Iterable<App>) {
    super(apps, (app) => app.config.ports);
  }

  /** Returns the app that owns `port`, or `undefined`. */
  route(port: number): App | undefined {
    return this.find(port);
  }
}
