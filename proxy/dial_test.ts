import assert from "node:assert/strict";
import { DialCancelled, DialControl, DialError, dialTarget } from "./dial.ts";
import { EventLoop, type Watched } from "./event_loop.ts";
import type { Resolver } from "./resolver.ts";
import { parseTarget, type TargetAddress } from "./target.ts";

function targetOf(text: string): TargetAddress {
  const target = parseTarget(text);
  if (typeof target === "string") throw new Error(target);
  return target;
}

/** Runs `dialTarget` on a fresh loop and returns what it reported. */
async function dial(
  target: string,
  resolver: Pick<Resolver, "resolve">,
  timeoutMs: number,
  control?: DialControl,
  onStart?: () => void,
): Promise<Watched | DialError | DialCancelled> {
  const loop = new EventLoop();
  loop.start();
  try {
    const result = await new Promise<Watched | DialError | DialCancelled>(
      (resolve) => {
        dialTarget(
          targetOf(target),
          { connectTimeoutMs: timeoutMs, sourcePorts: "rotate" },
          resolver as Resolver,
          loop,
          control,
          resolve,
        );
        onStart?.();
      },
    );
    if (!(result instanceof Error)) loop.close(result.fd);
    return result;
  } finally {
    await loop.stop();
  }
}

Deno.test("dialTarget() tries the next address after a refusal", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  // Nothing listens on 127.0.0.2 at that port, so the first address refuses.
  const resolver = {
    resolve: () => Promise.resolve(["127.0.0.2", "127.0.0.1"]),
  };
  const result = await dial(
    `name.test:${listener.addr.port}`,
    resolver,
    1_000,
  );
  assert.ok(!(result instanceof Error), `got ${result}`);
});

Deno.test("dialTarget() reports a refusal of every address", async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = closed.addr.port;
  closed.close();
  const resolver = {
    resolve: () => Promise.resolve(["127.0.0.2", "127.0.0.1"]),
  };
  const result = await dial(`name.test:${port}`, resolver, 1_000);
  assert.ok(result instanceof DialError, `got ${result}`);
  assert.equal(result.reason, "refused");
});

Deno.test("dialTarget() stops waiting for a lookup when cancelled", async () => {
  const control = new DialControl();
  const started = Date.now();
  const result = await dial(
    "slow.test:80",
    { resolve: () => new Promise<string[]>(() => {}) },
    10_000,
    control,
    () => setTimeout(() => control.cancel(), 50),
  );
  assert.ok(result instanceof DialCancelled, `got ${result}`);
  assert.ok(Date.now() - started < 2_000, "waited for the lookup");
});

Deno.test("dialTarget() tries the address that connected last first", async () => {
  using good = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = good.addr.port;
  const resolver = {
    resolve: () => Promise.resolve(["127.0.0.2", "127.0.0.1"]),
  };
  // Nothing listens on 127.0.0.2 yet, so the first dial refuses there.
  const first = await dial(`prefer.test:${port}`, resolver, 1_000);
  assert.ok(!(first instanceof Error), `got ${first}`);
  (await good.accept()).close();

  // Now 127.0.0.2 would accept too, but 127.0.0.1 connected last.
  using other = Deno.listen({ hostname: "127.0.0.2", port });
  const accepted = Promise.race([
    good.accept().then((conn) => (conn.close(), "127.0.0.1")),
    other.accept().then((conn) => (conn.close(), "127.0.0.2")),
  ]);
  const second = await dial(`prefer.test:${port}`, resolver, 1_000);
  assert.ok(!(second instanceof Error), `got ${second}`);
  assert.equal(await accepted, "127.0.0.1");
});
