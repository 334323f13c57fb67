import assert from "node:assert/strict";
import { BpfFrontend } from "./bpf_frontend.ts";
import type { PortRange } from "./frontend.ts";
import { parsePrefix, type Prefix } from "./prefix.ts";
import { openPinnedState, statePath } from "../ebpf/pinned_state.ts";
import {
  closeFd,
  openReadOnly,
  tryLockExclusive,
  unlock,
} from "../ffi/libc.ts";
import {
  freezeMap,
  NEEDS_ROOT,
  reply,
  request,
  requestAll,
  requestUntil,
  requireTestNamespace,
  ROOT,
  TestPinRoot,
} from "../ebpf/_test_helpers.ts";

const LOCALHOST_V4 = [parsePrefix("127.0.0.1/32")];

/**
 * Runs `body` with the kernel setting at `path` set to `value`, then puts
 * the old value back. The settings belong to the test's network namespace,
 * so the host keeps its own.
 */
async function withSetting(
  path: string,
  value: string,
  body: () => Promise<void>,
): Promise<void> {
  const original = Deno.readTextFileSync(path);
  Deno.writeTextFileSync(path, value);
  try {
    await body();
  } finally {
    Deno.writeTextFileSync(path, original);
  }
}

Deno.test(
  "BpfFrontend.apply() steers 2,000 ports to their apps",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const apps = [
      { name: "alpha", first: 20000, last: 20499 },
      { name: "beta", first: 20500, last: 20999 },
      { name: "gamma", first: 21000, last: 21499 },
      { name: "delta", first: 21500, last: 21999 },
    ];
    await using server = new TestServer(root.path, LOCALHOST_V4, (port) => {
      const app = apps.find((a) => a.first <= port && port <= a.last);
      return `${app?.name ?? "none"} ${port}`;
    });
    await server.frontend.apply(apps);

    const ports = apps.flatMap((a) => range(a.first, a.last));
    const responses = await requestAll("127.0.0.1", ports);
    for (const app of apps) {
      for (let port = app.first; port <= app.last; port++) {
        assert.deepEqual(responses.get(port), `${app.name} ${port}`);
      }
    }
    const counters = server.frontend.counters();
    assert.ok(
      counters.steered > 1999n,
      `got ${counters.steered}; want more than ${1999n}`,
    );
    assert.ok(
      counters.lookups > 1999n,
      `got ${counters.lookups}; want more than ${1999n}`,
    );
    assert.deepEqual(counters.noSocket, 0n);
    assert.deepEqual(counters.assignErrors, 0n);
  },
);

Deno.test(
  "BpfFrontend refuses connections to unconfigured ports",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    await server.frontend.apply([{ first: 30000, last: 30009 }]);

    assert.deepEqual(await request("127.0.0.1", 30005), "30005");
    assert.deepEqual(await request("127.0.0.1", 30010), "ConnectionRefused");
    assert.deepEqual(await request("127.0.0.1", 29999), "ConnectionRefused");
  },
);

Deno.test(
  "BpfFrontend leaves addresses outside the prefixes alone",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    await server.frontend.apply([{ first: 30100, last: 30100 }]);
    // A plain socket on another loopback address and the same port.
    using other = Deno.listen({ hostname: "127.0.0.2", port: 30100 });
    const accepted = other.accept().then((conn) => reply(conn, "other"))
      .catch(() => {}); // an assertion below reports the failure

    assert.deepEqual(await request("127.0.0.2", 30100), "other");
    await accepted;
    assert.deepEqual(await request("127.0.0.1", 30100), "30100");
    assert.deepEqual(await request("127.0.0.3", 30100), "ConnectionRefused");
    assert.deepEqual(server.ports, [30100]);
  },
);

Deno.test(
  "BpfFrontend opens an IPv4 socket for IPv4 prefixes",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    await server.frontend.apply([{ first: 30150, last: 30150 }]);

    assert.equal(server.frontend.addr.hostname, "127.0.0.1");
    assert.deepEqual(await request("127.0.0.1", 30150), "30150");
  },
);

Deno.test(
  "BpfFrontend binds elsewhere when 127.0.0.1 has no port",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await withSetting(
      "/proc/sys/net/ipv4/ip_local_port_range",
      "40100 40103",
      async () => {
        // Connections closed by the client first leave TIME_WAIT sockets on
        // 127.0.0.1 that take every port of the range.
        using listener = Deno.listen({ hostname: "127.0.0.1", port: 30180 });
        for (let i = 0; i < 4; i++) {
          const client = await Deno.connect({
            hostname: "127.0.0.1",
            port: listener.addr.port,
          });
          const accepted = await listener.accept();
          client.close();
          await accepted.read(new Uint8Array(1));
          accepted.close();
        }
        assert.throws(
          () => Deno.listen({ hostname: "127.0.0.1", port: 0 }),
          Deno.errors.AddrInUse,
        );

        await using server = new TestServer(root.path, LOCALHOST_V4);
        await server.frontend.apply([{ first: 30170, last: 30170 }]);
        assert.notEqual(server.frontend.addr.hostname, "127.0.0.1");
        assert.match(server.frontend.addr.hostname, /^127\./);
        assert.deepEqual(await request("127.0.0.1", 30170), "30170");
      },
    );
  },
);

Deno.test(
  "BpfFrontend on an IPv4 socket rejects IPv6 prefixes",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    const ports = [{ first: 30160, last: 30160 }];
    await server.frontend.apply(ports);

    await assert.rejects(
      server.frontend.apply(ports, [
        ...LOCALHOST_V4,
        parsePrefix("::1/128"),
      ]),
      /the IPv6 prefix ::1\/128, but the proxy socket takes IPv4 connections only.*restart anyport/,
    );
    assert.deepEqual(await request("127.0.0.1", 30160), "30160");
    assert.deepEqual(await request("::1", 30160), "ConnectionRefused");
  },
);

Deno.test("BpfFrontend steers IPv6 connections", NEEDS_ROOT, async () => {
  using root = new TestPinRoot();
  await using server = new TestServer(root.path, [parsePrefix("::1/128")]);
  await server.frontend.apply([{ first: 30200, last: 30201 }]);
  assert.equal(server.frontend.addr.hostname, "::ffff:127.0.0.1");

  assert.deepEqual(await request("::1", 30200), "30200");
  assert.deepEqual(await request("::1", 30201), "30201");
  assert.deepEqual(await request("127.0.0.1", 30200), "ConnectionRefused");
});

Deno.test(
  "BpfFrontend steers both families where bindv6only is 1",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await withSetting("/proc/sys/net/ipv6/bindv6only", "1", async () => {
      await using server = new TestServer(root.path, [
        ...LOCALHOST_V4,
        parsePrefix("::1/128"),
      ]);
      await server.frontend.apply([{ first: 30250, last: 30250 }]);

      assert.deepEqual(await request("127.0.0.1", 30250), "30250");
      assert.deepEqual(await request("::1", 30250), "30250");
    });
  },
);

Deno.test(
  "BpfFrontend hands steering to the standby socket without a refusal",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const ports = [{ first: 30260, last: 30260 }];
    await using older = new TestServer(root.path, LOCALHOST_V4, () => "older");
    await older.frontend.apply(ports);
    const newer = new TestServer(root.path, LOCALHOST_V4, () => "newer");
    await newer.frontend.apply(ports);
    assert.deepEqual(await request("127.0.0.1", 30260), "newer");
    // The older socket becomes the standby socket at its next ownership
    // check.
    using state = openPinnedState(statePath(root.path))!;
    await until(() => state.maps.standbyCookie() !== undefined);

    let closing = true;
    const replies: string[] = [];
    const probe = (async () => {
      while (closing) replies.push(await request("127.0.0.1", 30260));
    })();
    await delay(20);
    await newer[Symbol.asyncDispose]();
    await delay(100);
    closing = false;
    await probe;

    const unexpected = replies.filter((reply) =>
      reply !== "newer" && reply !== "older"
    );
    assert.deepEqual(unexpected, [], `replies: ${replies.join(" ")}`);
    assert.deepEqual(replies.at(-1), "older");
    // The older process takes the sockmap and leaves the standby slot.
    await until(() => state.maps.socketCookie() !== undefined);
    assert.deepEqual(state.maps.standbyCookie(), undefined);
  },
);

Deno.test(
  "BpfFrontend takes steering back with its program and ports at once",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using older = new TestServer(root.path, LOCALHOST_V4, () => "older");
    await older.frontend.apply([{ first: 30280, last: 30280 }]);
    using state = openPinnedState(statePath(root.path))!;
    const olderProgram = state.linkInfo().programId;
    const newer = new TestServer(root.path, LOCALHOST_V4, () => "newer");
    await newer.frontend.apply([{ first: 30280, last: 30281 }]);
    assert.notEqual(state.linkInfo().programId, olderProgram);
    await until(() => state.maps.standbyCookie() !== undefined);

    await newer[Symbol.asyncDispose]();
    // The first connection that the standby socket gets makes it take
    // steering back, so the port that only the newer one served is refused
    // right after.
    assert.deepEqual(await request("127.0.0.1", 30280), "older");
    assert.deepEqual(await request("127.0.0.1", 30281), "ConnectionRefused");
    assert.equal(state.linkInfo().programId, olderProgram);
  },
);

Deno.test(
  "BpfFrontend swaps the program at takeover",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using older = new TestServer(root.path, LOCALHOST_V4, () => "older");
    await older.frontend.apply([{ first: 30285, last: 30285 }]);
    using state = openPinnedState(statePath(root.path))!;
    const olderProgram = state.linkInfo().programId;

    // A newer process that opens and then fails to start.
    const newer = new TestServer(root.path, LOCALHOST_V4, () => "newer");
    assert.equal(state.linkInfo().programId, olderProgram);
    await newer[Symbol.asyncDispose]();

    assert.equal(state.linkInfo().programId, olderProgram);
    assert.deepEqual(await request("127.0.0.1", 30285), "older");
  },
);

Deno.test(
  "BpfFrontend hands a rollback to the newest replaced process",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const ports = [{ first: 30290, last: 30290 }];
    await using first = new TestServer(root.path, LOCALHOST_V4, () => "a");
    await first.frontend.apply(ports);
    using pins = openPinnedState(statePath(root.path))!;
    const second = new TestServer(root.path, LOCALHOST_V4, () => "b");
    await second.frontend.apply(ports);
    await using third = new TestServer(root.path, LOCALHOST_V4, () => "c");
    await third.frontend.apply(ports);
    await until(() => pins.maps.standbyCookie() !== undefined);
    // The second one, the standby, stops. The first one becomes the standby
    // in its place, and the third one, the owner, sees it there.
    await second[Symbol.asyncDispose]();
    await until(() => pins.maps.standbyCookie() !== undefined);
    const firstCookie = pins.maps.standbyCookie();
    await delay(120);

    const fourth = new TestServer(root.path, LOCALHOST_V4, () => "d");
    await fourth.frontend.apply(ports);
    await until(() => pins.maps.standbyCookie() !== firstCookie);
    await fourth[Symbol.asyncDispose]();

    assert.deepEqual(await request("127.0.0.1", 30290), "c");
  },
);

Deno.test(
  "BpfFrontend leaves the standby slot when it stops with the owner",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const ports = [{ first: 30295, last: 30295 }];
    await using oldest = new TestServer(root.path, LOCALHOST_V4, () => "o");
    await oldest.frontend.apply(ports);
    using pins = openPinnedState(statePath(root.path))!;
    const standby = new TestServer(root.path, LOCALHOST_V4, () => "s");
    await standby.frontend.apply(ports);
    const owner = new TestServer(root.path, LOCALHOST_V4, () => "n");
    await owner.frontend.apply(ports);
    await until(() => pins.maps.standbyCookie() !== undefined);
    await delay(120);

    let probing = true;
    const replies: string[] = [];
    const probe = (async () => {
      while (probing) replies.push(await request("127.0.0.1", 30295));
    })();
    await delay(20);
    // Both stop at once; the standby must not take the connections while
    // it drains.
    await Promise.all([
      standby[Symbol.asyncDispose](),
      owner[Symbol.asyncDispose](),
    ]);
    await delay(200);
    probing = false;
    await probe;

    const fromStandby = replies.filter((reply) => reply === "s").length;
    assert.ok(fromStandby <= 2, `replies: ${replies.join(" ")}`);
    assert.deepEqual(replies.at(-1), "o");
  },
);

Deno.test(
  "BpfFrontend takes over pins made without the standby map",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const ports = [{ first: 30270, last: 30270 }];
    {
      await using older = new TestServer(root.path, LOCALHOST_V4, () => "a");
      await older.frontend.apply(ports);
    }
    // What a build before the standby map leaves pinned.
    const pin = `${statePath(root.path)}/standby`;
    Deno.removeSync(pin);
    using before = openPinnedState(statePath(root.path))!;
    assert.equal(before.maps.has("standby"), false);

    await using newer = new TestServer(root.path, LOCALHOST_V4, () => "b");
    await newer.frontend.apply(ports);

    assert.deepEqual(await request("127.0.0.1", 30270), "b");
    assert.doesNotThrow(() => Deno.statSync(pin), "standby map not pinned");
    using after = openPinnedState(statePath(root.path))!;
    assert.equal(after.maps.has("standby"), true);
    assert.equal(after.maps.standbyCookie(), undefined);
  },
);

Deno.test(
  "BpfFrontend.apply() changes the steered addresses",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    await server.frontend.apply([{ first: 30300, last: 30300 }]);
    assert.deepEqual(await request("127.0.0.2", 30300), "ConnectionRefused");

    const port = [{ first: 30300, last: 30300 }];
    await server.frontend.apply(port, [parsePrefix("127.0.0.0/30")]);
    assert.deepEqual(await request("127.0.0.1", 30300), "30300");
    assert.deepEqual(await request("127.0.0.2", 30300), "30300");
    assert.deepEqual(await request("127.0.0.4", 30300), "ConnectionRefused");

    await server.frontend.apply(port, [parsePrefix("127.0.0.2/32")]);
    assert.deepEqual(await request("127.0.0.1", 30300), "ConnectionRefused");
    assert.deepEqual(await request("127.0.0.2", 30300), "30300");
  },
);

Deno.test(
  "BpfFrontend.apply() undoes a failed write",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    const before = [{ first: 30310, last: 30310 }];
    await server.frontend.apply(before);
    freezeMap(root.path, "ports");

    let message = "";
    await server.frontend.apply(
      [{ first: 30310, last: 30311 }],
      [parsePrefix("127.0.0.0/30")],
    ).catch((error) => message = error.message);

    assert.match(
      message,
      /^BPF steering update failed, so the earlier ports and prefixes stay steered: add 1 steered ports: /,
    );
    using state = openPinnedState(statePath(root.path));
    assert.deepEqual(state?.maps.readPrefixes(), LOCALHOST_V4);
    assert.deepEqual(await request("127.0.0.1", 30310), "30310");
    assert.deepEqual(await request("127.0.0.2", 30310), "ConnectionRefused");
    assert.deepEqual(await request("127.0.0.1", 30311), "ConnectionRefused");
  },
);

Deno.test(
  "BpfFrontend.apply() replaces 4,000 prefixes with 4,000 others",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    // Both lists fit the map (4,096 per family), but not together.
    const first = [
      parsePrefix("127.0.0.2/32"),
      ...range(1, 3999).map((i) => parsePrefix(`10.${i >> 8}.${i & 255}.0/24`)),
    ];
    const second = [
      parsePrefix("127.0.0.1/32"),
      ...range(1, 3999).map((i) => parsePrefix(`10.${i >> 8}.${i & 255}.1/32`)),
    ];
    await using server = new TestServer(root.path, first);
    const port = [{ first: 30320, last: 30320 }];
    await server.frontend.apply(port);
    assert.deepEqual(await request("127.0.0.2", 30320), "30320");

    await server.frontend.apply(port, second);

    using state = openPinnedState(statePath(root.path));
    assert.deepEqual(state?.maps.readPrefixes().length, 4000);
    assert.deepEqual(await request("127.0.0.1", 30320), "30320");
    assert.deepEqual(await request("127.0.0.2", 30320), "ConnectionRefused");
  },
);

Deno.test(
  "BpfFrontend.pause() holds connections until resume()",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    await server.frontend.apply([{ first: 30330, last: 30330 }]);
    server.frontend.pause();

    const reply = request("127.0.0.1", 30330);
    await delay(200);
    assert.deepEqual(server.ports, []);

    server.frontend.resume();
    assert.deepEqual(await reply, "30330");
    assert.deepEqual(server.ports, [30330]);
  },
);

Deno.test(
  "BpfFrontend.apply() keeps kept ports open during reloads",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    const kept: PortRange = { first: 31000, last: 31009 };
    const extra: PortRange[] = [
      { first: 32000, last: 32999 },
      { first: 33000, last: 33000 },
    ];
    await server.frontend.apply([kept]);

    const reloads = (async () => {
      for (let i = 0; i < 20; i++) {
        await server.frontend.apply(i % 2 === 0 ? [kept, ...extra] : [kept]);
        await delay(10);
      }
      await server.frontend.apply([kept, ...extra]);
    })();
    const result = await requestUntil(
      "127.0.0.1",
      range(kept.first, kept.last),
      (port, response) => response === `${port}`,
      reloads,
    );

    assert.deepEqual(result.failures, []);
    assert.ok(result.count > 20, `got ${result.count}; want more than ${20}`);
    assert.deepEqual(await request("127.0.0.1", 32500), "32500");
    assert.deepEqual(await request("127.0.0.1", 33000), "33000");
    await server.frontend.apply([kept]);
    assert.deepEqual(await request("127.0.0.1", 32500), "ConnectionRefused");
    assert.deepEqual(await request("127.0.0.1", 31005), "31005");
  },
);

Deno.test(
  "BpfFrontend.apply() updates 10,000 ports in one call",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    const many: PortRange = { first: 40000, last: 49999 };

    const addStart = performance.now();
    await server.frontend.apply([many]);
    const addMs = performance.now() - addStart;
    const removeStart = performance.now();
    await server.frontend.apply([{ first: 40000, last: 40000 }]);
    const removeMs = performance.now() - removeStart;

    // deno-lint-ignore no-console
    console.log(
      `apply 10,000 ports: add ${addMs.toFixed(1)} ms, ` +
        `remove ${removeMs.toFixed(1)} ms`,
    );
    assert.ok(addMs < 1000, `got ${addMs}; want less than ${1000}`);
    assert.ok(removeMs < 1000, `got ${removeMs}; want less than ${1000}`);
    using state = openPinnedState(statePath(root.path));
    assert.deepEqual(state?.maps.readPorts(), new Set([40000]));
  },
);

Deno.test(
  "BpfFrontend closes direct connections to its own port",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    await server.frontend.apply([{ first: 30400, last: 30400 }]);

    assert.deepEqual(await request("127.0.0.1", server.frontend.addr.port), "");
    assert.deepEqual(server.ports, []);
  },
);

Deno.test("BpfFrontend survives a throwing handler", NEEDS_ROOT, async () => {
  using root = new TestPinRoot();
  let calls = 0;
  const frontend = BpfFrontend.open({
    prefixes: LOCALHOST_V4,
    pinRoot: root.path,
    onConn: () => {
      calls++;
      throw new Error("handler failed");
    },
  });
  try {
    await frontend.apply([{ first: 30450, last: 30450 }]);
    assert.equal(await request("127.0.0.1", 30450), "");
    assert.equal(await request("127.0.0.1", 30450), "");
    assert.equal(calls, 2);
  } finally {
    await frontend.close();
  }
});

Deno.test(
  "BpfFrontend.open() takes over a running frontend without refusals",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const ports: PortRange[] = [{ first: 30500, last: 30504 }];
    const first = new TestServer(root.path, LOCALHOST_V4, (p) => `first ${p}`);
    await first.frontend.apply(ports);
    let second: TestServer | undefined;

    const handover = (async () => {
      await delay(100);
      second = new TestServer(root.path, LOCALHOST_V4, (p) => `second ${p}`);
      await second.frontend.apply(ports);
      await first[Symbol.asyncDispose]();
      await delay(100);
    })();
    const result = await requestUntil(
      "127.0.0.1",
      range(30500, 30504),
      (port, response) => response.endsWith(` ${port}`),
      handover,
    );
    await handover;
    await using _second = second;

    assert.deepEqual(result.failures, []);
    assert.ok(first.ports.length > 0, "the first frontend got no connection");
    assert.ok(
      (second?.ports.length ?? 0) > 0,
      "the second frontend got no connection",
    );
  },
);

Deno.test(
  "BpfFrontend diffs against the current maps",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using older = new TestServer(root.path, LOCALHOST_V4, () => "old");
    await older.frontend.apply([{ first: 30660, last: 30661 }]);
    const newer = new TestServer(root.path, LOCALHOST_V4, () => "new");
    // The owner reloads after the newer process opened and before it takes
    // steering over: one port more, one port less.
    await older.frontend.apply([
      { first: 30660, last: 30660 },
      { first: 30662, last: 30662 },
    ]);
    await newer.frontend.apply([{ first: 30661, last: 30661 }]);
    using state = openPinnedState(statePath(root.path))!;

    try {
      assert.deepEqual([...state.maps.readPorts()], [30661]);
      assert.deepEqual(await request("127.0.0.1", 30661), "new");
      assert.deepEqual(await request("127.0.0.1", 30662), "ConnectionRefused");
    } finally {
      await newer[Symbol.asyncDispose]();
    }
  },
);

Deno.test(
  "BpfFrontend waits for another writer's lock",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const port = 30670;
    {
      // Pins the state, and leaves it pinned when it closes.
      await using first = new TestServer(root.path, LOCALHOST_V4);
      await first.frontend.apply([{ first: port - 1, last: port - 1 }]);
    }
    // Another process in the middle of its check and write of the maps.
    const lock = openReadOnly(statePath(root.path));
    assert.ok(tryLockExclusive(lock));
    let child: Deno.ChildProcess | undefined;
    const started = startChild(root.path, port).then((c) => child = c);
    try {
      await delay(500);
      assert.equal(child, undefined);
      assert.deepEqual(await request("127.0.0.1", port), "ConnectionRefused");
      unlock(lock);
      await started;
      assert.deepEqual(
        await request("127.0.0.1", port),
        `child ${child!.pid}`,
      );
    } finally {
      closeFd(lock);
      await started.catch(() => {});
      child?.kill("SIGKILL");
      await child?.status;
    }
  },
);

Deno.test(
  "BpfFrontend gives up on a kept lock",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using server = new TestServer(root.path, LOCALHOST_V4);
    await server.frontend.apply([{ first: 30680, last: 30680 }]);
    // A process stopped while it held the lock.
    const lock = openReadOnly(statePath(root.path));
    assert.ok(tryLockExclusive(lock));
    try {
      let ticks = 0;
      const timer = setInterval(() => ticks++, 100);
      const started = Date.now();
      let message = "";
      await server.frontend.apply([{ first: 30680, last: 30681 }])
        .catch((error) => message = error.message);
      clearInterval(timer);

      assert.match(
        message,
        /has held the lock on the BPF state .* for 3000 ms/,
      );
      assert.ok(Date.now() - started >= 3_000);
      // The thread went on meanwhile, and so did the connections.
      assert.ok(ticks >= 20, `${ticks} timer ticks`);
      assert.deepEqual(await request("127.0.0.1", 30680), "30680");
      assert.deepEqual(await request("127.0.0.1", 30681), "ConnectionRefused");
    } finally {
      unlock(lock);
      closeFd(lock);
    }
  },
);

Deno.test(
  "BpfFrontend.open() takes over from another process without refusals",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const port = 30650;
    const first = await startChild(root.path, port);
    let second: Deno.ChildProcess | undefined;
    const responses = new Set<string>();

    const handover = (async () => {
      await delay(100);
      second = await startChild(root.path, port);
      first.kill("SIGTERM");
      assert.equal((await first.status).code, 0);
      await delay(100);
    })();
    const result = await requestUntil(
      "127.0.0.1",
      [port],
      (_, response) => responses.add(response) && response.startsWith("child "),
      handover,
    );
    await handover.finally(async () => {
      second?.kill("SIGKILL");
      await second?.status;
    });

    assert.deepEqual(result.failures, []);
    assert.ok(responses.has(`child ${first.pid}`), [...responses].join(", "));
    assert.ok(responses.has(`child ${second?.pid}`), [...responses].join(", "));
  },
);

Deno.test(
  "BpfFrontend hands steering back to the later of two racing owners",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const port = [{ first: 30340, last: 30340 }];
    await using a = new TestServer(root.path, LOCALHOST_V4, () => "a");
    await a.frontend.apply(port);
    await delay(120);
    // B and C take over within one ownership check, so A never finds B in
    // the sockmap.
    await using b = new TestServer(root.path, LOCALHOST_V4, () => "b");
    await b.frontend.apply(port);
    const c = new TestServer(root.path, LOCALHOST_V4, () => "c");
    await c.frontend.apply(port);
    assert.deepEqual(await request("127.0.0.1", 30340), "c");
    await delay(120);

    // A and B both find the sockmap empty. Either may claim it first, but
    // B took over from A once, so B ends up with it.
    await c[Symbol.asyncDispose]();
    let reply = "";
    for (let i = 0; i < 50 && reply !== "b"; i++) {
      await delay(20);
      reply = await request("127.0.0.1", 30340);
    }
    assert.deepEqual(reply, "b");
    await delay(200);
    assert.deepEqual(await request("127.0.0.1", 30340), "b");
  },
);

Deno.test(
  "BpfFrontend.open() restarts after the old process is killed",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const port = 30600;

    const first = await startChild(root.path, port);
    const firstResponse = await request("127.0.0.1", port);
    assert.deepEqual(firstResponse, `child ${first.pid}`);
    first.kill("SIGKILL");
    await first.status;

    // The link stays pinned while the kernel dropped the dead socket.
    assert.deepEqual(await request("127.0.0.1", port), "ConnectionRefused");
    {
      using state = openPinnedState(statePath(root.path));
      assert.ok(state !== undefined);
      assert.deepEqual(state.maps.socketCookie(), undefined);
      assert.ok(
        state.maps.readCounters().noSocket > 0n,
        `got ${state.maps.readCounters().noSocket}; want more than ${0n}`,
      );
    }

    const second = await startChild(root.path, port);
    try {
      assert.deepEqual(await request("127.0.0.1", port), `child ${second.pid}`);
    } finally {
      second.kill("SIGKILL");
      await second.status;
    }
  },
);

Deno.test(
  "BpfFrontend.apply() fails once the frontend is closed",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const server = new TestServer(root.path, LOCALHOST_V4);
    await server[Symbol.asyncDispose]();

    let message = "";
    await server.frontend.apply([]).catch((e) => message = e.message);
    assert.deepEqual(message, "Cannot apply ports: the BPF frontend is closed");
  },
);

Deno.test("BpfFrontend.open() names a missing bpffs", NEEDS_ROOT, () => {
  requireTestNamespace();
  const pinRoot = Deno.makeTempDirSync();
  try {
    let message = "";
    try {
      BpfFrontend.open({ prefixes: [], onConn: () => {}, pinRoot });
    } catch (error) {
      message = (error as Error).message;
    }
    assert.ok(message.includes("no bpffs is mounted there"), message);
    assert.ok(message.includes('"mount -t bpf bpf /sys/fs/bpf"'), message);
  } finally {
    Deno.removeSync(pinRoot);
  }
});

Deno.test(
  "BpfFrontend.open() names the missing --allow-all",
  NEEDS_ROOT,
  async () => {
    requireTestNamespace();
    const output = await runChild(["env"], [
      "--allow-ffi",
      "--allow-read",
      "--allow-write",
      "--allow-net",
    ]);
    assert.ok(
      output.includes("Cannot use BPF mode without --allow-all"),
      output,
    );
  },
);

Deno.test(
  "BpfFrontend.open() names the missing capabilities",
  NEEDS_ROOT,
  async () => {
    requireTestNamespace();
    const output = await runChild([
      "setpriv",
      "--inh-caps=-all",
      "--bounding-set=-all",
      "--",
    ]);
    assert.ok(output.includes("lacks CAP_BPF and CAP_NET_ADMIN"), output);
    assert.ok(output.includes("run as root or grant"), output);
  },
);

Deno.test("BpfFrontend.open() names a missing libbpf", NEEDS_ROOT, async () => {
  requireTestNamespace();
  // Hide libbpf.so.1 in a mount namespace of the child's own.
  const hide = "mount --bind /dev/null " +
    `"$(readlink -f "$(ldconfig -p | awk '/libbpf\\.so\\.1 /{print $NF; exit}')")"`;
  const output = await runChild([
    "unshare",
    "--mount",
    "sh",
    "-c",
    `${hide} && exec "$@"`,
    "sh",
  ]);
  assert.ok(output.includes("Cannot open libbpf.so.1"), output);
  assert.ok(output.includes('"apt-get install libbpf1"'), output);
});

/**
 * BpfFrontend whose connections each get one line, `respond(port)`, and are
 * closed.
 */
class TestServer implements AsyncDisposable {
  readonly frontend: BpfFrontend;
  /** Destination ports of the connections handled so far. */
  readonly ports: number[] = [];
  readonly #replies = new Set<Promise<void>>();

  constructor(
    pinRoot: string,
    prefixes: Prefix[],
    respond: (port: number) => string = (port) => `${port}`,
  ) {
    this.frontend = BpfFrontend.open({
      prefixes,
      pinRoot,
      onConn: (conn, port) => {
        this.ports.push(port);
        const done = reply(conn, respond(port));
        this.#replies.add(done);
        done.finally(() => this.#replies.delete(done));
      },
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.frontend.close();
    await Promise.all(this.#replies);
  }
}

/** Starts proxy/testdata/bpf_child.ts and waits until it steers `port`. */
async function startChild(
  pinRoot: string,
  port: number,
): Promise<Deno.ChildProcess> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `${ROOT}proxy/testdata/bpf_child.ts`,
      pinRoot,
      `${port}`,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let output = "";
  while (!output.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    output += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  assert.deepEqual(output.trim(), "ready");
  return child;
}

/**
 * Runs bpf_child.ts behind `wrapper`, with `permissions` for Deno, and
 * returns its output.
 */
async function runChild(
  wrapper: string[],
  permissions = ["-A"],
): Promise<string> {
  const [command = "", ...args] = wrapper;
  const output = await new Deno.Command(command, {
    args: [
      ...args,
      Deno.execPath(),
      "run",
      ...permissions,
      `${ROOT}proxy/testdata/bpf_child.ts`,
      "/sys/fs/bpf/anyport-test-unused",
      "30700",
    ],
  }).output();
  const text = new TextDecoder().decode(output.stdout) +
    new TextDecoder().decode(output.stderr);
  assert.deepEqual(output.code, 1, text);
  return text;
}

function range(first: number, last: number): number[] {
  return Array.from({ length: last - first + 1 }, (_, i) => first + i);
}

/** Waits until `condition` holds, checking every 10 ms for up to 2 s. */
async function until(condition: () => boolean): Promise<void> {
  for (let waited = 0; !condition(); waited += 10) {
    if (waited > 2_000) throw new Error("Condition not met within 2 s");
    await delay(10);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
