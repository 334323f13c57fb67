import assert from "node:assert/strict";
import { Resolver } from "./resolver.ts";
import { inTestNamespace } from "../tests/helpers.ts";

Deno.test("Resolver returns literal addresses as they are", async () => {
  const resolver = new Resolver();

  assert.deepEqual(await resolver.resolve("127.0.0.1"), ["127.0.0.1"]);
  assert.deepEqual(await resolver.resolve("::1"), ["::1"]);
});

Deno.test("Resolver makes callers of one name share the first lookup", async () => {
  const resolver = new Resolver();

  const results = await Promise.all(
    Array.from({ length: 20 }, () => resolver.resolve("localhost")),
  );

  for (const addresses of results) {
    assert.ok(addresses.length > 0, "no address for localhost");
  }
});

Deno.test("Resolver rejects a name that does not resolve", async () => {
  const resolver = new Resolver();

  await assert.rejects(
    () => resolver.resolve("no-such-host.invalid"),
    /cannot resolve host name "no-such-host\.invalid"/,
  );
  await assert.rejects(
    () => resolver.resolve("no-such-host.invalid"),
    /cannot resolve host name "no-such-host\.invalid"/,
  );
});

Deno.test("Resolver names the host for every caller of a failed lookup", async () => {
  const resolver = new Resolver();

  const results = await Promise.allSettled(
    Array.from({ length: 3 }, () => resolver.resolve("shared-fail.invalid")),
  );

  for (const result of results) {
    assert.equal(result.status, "rejected");
    assert.match(
      String((result as PromiseRejectedResult).reason),
      /cannot resolve host name "shared-fail\.invalid"/,
    );
  }
});

Deno.test({
  name: "Resolver keeps the resolver's order of addresses, once each",
  // Mounts its own /etc/hosts, so only in a namespace of the test run's own.
  ignore: !inTestNamespace(),
  async fn() {
    const hosts = await Deno.makeTempFile();
    await Deno.writeTextFile(
      hosts,
      "127.0.0.1 localhost\n127.0.0.7 order.test\n" +
        "127.0.0.9 order.test\n127.0.0.7 order.test\n127.0.0.8 order.test\n",
    );
    await mount(["--bind", hosts, "/etc/hosts"]);
    try {
      assert.deepEqual(await new Resolver().resolve("order.test"), [
        "127.0.0.7",
        "127.0.0.9",
        "127.0.0.8",
      ]);
    } finally {
      await mount(["/etc/hosts"], "umount");
      await Deno.remove(hosts);
    }
  },
});

async function mount(args: string[], command = "mount"): Promise<void> {
  const { code, stderr } = await new Deno.Command(command, {
    args,
    stderr: "piped",
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
}
