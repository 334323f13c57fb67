import assert from "node:assert/strict";
import { App } from "./app.ts";
import type { AppConfig } from "./config.ts";
import type { PortRange } from "./frontend.ts";
import { Router } from "./router.ts";
import { DEFAULT_SETTINGS } from "./settings.ts";

/** App named `name` that owns `ports`, with one target. */
function makeApp(name: string, ports: PortRange[]): App {
  const config: AppConfig = {
    name,
    ports,
    targets: [{
      hostname: "127.0.0.1",
      port: 9000,
      literal: true,
      label: "127.0.0.1:9000",
    }],
  };
  return new App(config, DEFAULT_SETTINGS);
}

/** Ranges without fields other than `first` and `last`. */
function plain(ranges: PortRange[]): PortRange[] {
  return ranges.map(({ first, last }) => ({ first, last }));
}

Deno.test("Router routes each port of several ranges", () => {
  const web = makeApp("web", [
    { first: 5001, last: 5400 },
    { first: 8080, last: 8080 },
  ]);
  const api = makeApp("api", [
    { first: 6001, last: 6400 },
    { first: 1, last: 10 },
  ]);
  const db = makeApp("db", [{ first: 65000, last: 65535 }]);
  const router = new Router([web, api, db]);
  const expected: [App, PortRange][] = [
    [web, { first: 5001, last: 5400 }],
    [web, { first: 8080, last: 8080 }],
    [api, { first: 6001, last: 6400 }],
    [api, { first: 1, last: 10 }],
    [db, { first: 65000, last: 65535 }],
  ];

  for (const [app, range] of expected) {
    for (let port = range.first; port <= range.last; port++) {
      assert.equal(router.route(port), app, `port ${port}`);
    }
  }
});

Deno.test("Router returns undefined for unowned ports", () => {
  const router = new Router([
    makeApp("web", [{ first: 5001, last: 5400 }]),
    makeApp("api", [{ first: 6001, last: 6400 }, { first: 8080, last: 8080 }]),
  ]);

  for (const port of [0, 1, 5000, 5401, 6000, 6401, 8079, 8081, 65535]) {
    assert.equal(router.route(port), undefined, `port ${port}`);
  }
});

Deno.test("Router with no apps routes nothing", () => {
  const router = new Router([]);

  assert.equal(router.route(80), undefined);
  assert.deepEqual(router.ranges(), []);
});

Deno.test("Router finds ports among many single-port ranges", () => {
  const apps = Array.from(
    { length: 100 },
    (_, i) =>
      makeApp(`app-${i}`, [{ first: 1000 + i * 2, last: 1000 + i * 2 }]),
  );
  const router = new Router([...apps].reverse());

  for (const [i, app] of apps.entries()) {
    assert.equal(router.route(1000 + i * 2), app, `port ${1000 + i * 2}`);
    assert.equal(router.route(1001 + i * 2), undefined, `port ${1001 + i * 2}`);
  }
});

Deno.test("Router accepts any iterable of apps", () => {
  const web = makeApp("web", [{ first: 80, last: 80 }]);
  const router = new Router(new Map([["web", web]]).values());

  assert.equal(router.route(80), web);
});

Deno.test("Router.ranges() merges neighbours across apps", () => {
  const router = new Router([
    makeApp("a", [{ first: 1000, last: 1009 }, { first: 3000, last: 3002 }]),
    makeApp("b", [{ first: 1010, last: 1019 }, { first: 2000, last: 2000 }]),
    makeApp("c", [{ first: 2001, last: 2001 }, { first: 4000, last: 4000 }]),
  ]);

  assert.deepEqual(plain(router.ranges()), [
    { first: 1000, last: 1019 },
    { first: 2000, last: 2001 },
    { first: 3000, last: 3002 },
    { first: 4000, last: 4000 },
  ]);
});

Deno.test("Router.ranges() keeps ranges apart across a gap", () => {
  const router = new Router([
    makeApp("a", [{ first: 10, last: 20 }]),
    makeApp("b", [{ first: 22, last: 30 }]),
  ]);

  assert.deepEqual(plain(router.ranges()), [
    { first: 10, last: 20 },
    { first: 22, last: 30 },
  ]);
});

Deno.test("Router.ranges() leaves routing unchanged", () => {
  const a = makeApp("a", [{ first: 10, last: 20 }]);
  const b = makeApp("b", [{ first: 21, last: 30 }]);
  const router = new Router([a, b]);

  router.ranges();

  assert.equal(router.route(20), a);
  assert.equal(router.route(21), b);
  assert.deepEqual(a.config.ports, [{ first: 10, last: 20 }]);
});
