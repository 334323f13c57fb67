import assert from "node:assert/strict";
import { App } from "./app.ts";
import { connectToApp, type TargetConn } from "./connect.ts";
import { DialControl } from "./dial.ts";
import { EventLoop } from "./event_loop.ts";
import { Resolver } from "./resolver.ts";
import { DEFAULT_SETTINGS, type Settings } from "./settings.ts";
import { parseTarget, type TargetAddress } from "./target.ts";

function target(text: string): TargetAddress {
  const result = parseTarget(text);
  if (typeof result === "string") assert.fail(result);
  return result;
}

Deno.test("connectToApp() fails over from a connection that looped", async () => {
  using first = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  using second = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const settings: Settings = { ...DEFAULT_SETTINGS, balance: "round-robin" };
  const app = new App({
    name: "web",
    ports: [{ first: 8080, last: 8080 }],
    targets: [
      target(`127.0.0.1:${first.addr.port}`),
      target(`127.0.0.1:${second.addr.port}`),
    ],
  }, settings);
  const loop = new EventLoop();
  loop.start();
  try {
    const control = new DialControl();
    // As the proxy does when the connection comes back to one of its own
    // ports: the accept side flags it before the connect completes.
    control.onConnect = () => {
      if (control.target === app.targets[0]!.address.label) {
        control.looped = true;
      }
    };
    // Round-robin alternates from a random start, so about half of the
    // connects try the first target first.
    for (let i = 0; i < 20; i++) {
      const connected = await new Promise<TargetConn | undefined>(
        (resolve) =>
          connectToApp(
            app,
            settings,
            new Resolver(),
            loop,
            () => "test client",
            control,
            resolve,
          ),
      );
      assert.ok(connected);
      loop.close(connected.conn.fd);
      assert.equal(connected.target, app.targets[1]);
    }
    assert.equal(app.targets[0]!.failures, 0);
    assert.equal(app.targets[0]!.probing, false);
  } finally {
    await loop.stop();
  }
});

/** A resolver whose lookups never end, as with a resolver that drops queries. */
class StalledResolver extends Resolver {
  override resolve(): Promise<string[]> {
    return new Promise(() => {});
  }
}

Deno.test("connectToApp() counts connects in flight", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const settings: Settings = {
    ...DEFAULT_SETTINGS,
    balance: "least-connections",
  };
  const app = new App({
    name: "web",
    ports: [{ first: 8080, last: 8080 }],
    targets: [
      target("stalled.invalid:80"),
      target(`127.0.0.1:${listener.addr.port}`),
    ],
  }, settings);
  const [stalled, live] = app.targets;
  const loop = new EventLoop();
  loop.start();
  try {
    // One open connection on the live target sends the next client to the
    // other one, whose connect then hangs.
    live!.active = 1;
    const control = new DialControl();
    let outcome: TargetConn | undefined | "pending" = "pending";
    connectToApp(
      app,
      settings,
      new StalledResolver(),
      loop,
      () => "test client",
      control,
      (connected) => outcome = connected,
    );
    assert.equal(control.target, stalled!.address.label);
    assert.equal(stalled!.load, 1);

    // With that connection closed, both targets have one connection each
    // if the hanging connect counts, and the live one is idler.
    live!.active = 0;
    for (let i = 0; i < 50; i++) {
      assert.equal(app.balancer.order(app.targets, Date.now())[0], live);
    }

    control.cancel();
    assert.equal(outcome, undefined);
    assert.equal(stalled!.load, 0);
  } finally {
    await loop.stop();
  }
});
