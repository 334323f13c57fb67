import assert from "node:assert/strict";
import { requireTestNamespace } from "../ebpf/_test_helpers.ts";
import { DEFAULT_PIN_ROOT, statePath } from "../ebpf/pinned_state.ts";
import {
  closeFd,
  openReadOnly,
  tryLockExclusive,
  unlock,
} from "../ffi/libc.ts";
import {
  accepts,
  closeQuietly,
  connect,
  delay,
  nameServer,
  ProxyProcess,
  readAll,
  ROOT,
  roundTrip,
  waitFor,
  writeConfigFile,
} from "./helpers.ts";

/** BPF tests need root, a namespace of their own and a bpffs; see scripts/test.sh. */
const BPF = { ignore: Deno.uid() !== 0 };

const A_PORTS = { first: 30000, last: 30999 };
const B_PORTS = { first: 31000, last: 31999 };

function bpfConfig(a: string, b: string) {
  return {
    Mode: "bpf",
    SteerPrefixes: ["127.0.0.1/32", "::1/128"],
    ConnectTimeoutMs: 500,
    DrainTimeoutMs: 2_000,
    Apps: [
      { Name: "a", Ports: [`${A_PORTS.first}-${A_PORTS.last}`], Targets: [a] },
      {
        Name: "b",
        Ports: [`${B_PORTS.first}-${B_PORTS.last}`, 32000],
        Targets: [b],
      },
    ],
  };
}

/**
 * Checks for the test namespace, then starts name servers "a" and "b" and
 * writes a BPF-mode config for them. Disposing the result stops both servers.
 */
async function nameTargets() {
  requireTestNamespace();
  const a = nameServer("a");
  const b = nameServer("b");
  const config = bpfConfig(a.target, b.target);
  const path = await writeConfigFile(config);
  return {
    config,
    path,
    async [Symbol.asyncDispose]() {
      await a[Symbol.asyncDispose]();
      await b[Symbol.asyncDispose]();
    },
  };
}

function startBpfProxy(path: string): ProxyProcess {
  return new ProxyProcess(
    path,
    ["--log-level", "info", "--no-access-log"],
    undefined,
    [
      "--allow-all",
    ],
  );
}

async function detachAll(): Promise<void> {
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${ROOT}main.ts`, "bpf", "detach"],
    stdout: "null",
    stderr: "null",
  }).output();
  assert.equal(code, 0, "bpf detach failed");
}

Deno.test({
  ...BPF,
  name: "anyport in BPF mode waits out a lock",
  async fn() {
    await using targets = await nameTargets();
    {
      await using proxy = startBpfProxy(targets.path);
      await proxy.waitForLog(/Started in bpf mode/);
      // A process stopped while it held the lock on the BPF state.
      const lock = openReadOnly(statePath(DEFAULT_PIN_ROOT));
      assert.ok(tryLockExclusive(lock));
      try {
        await proxy.waitForLog(
          /Another process has held the lock on the BPF state .* so this one cannot check or take steering/,
        );
        // Port 32000 moves out of the config and 32001 comes in.
        const config = structuredClone(targets.config);
        config.Apps[1]!.Ports = [config.Apps[1]!.Ports[0]!, 32001];
        await Deno.writeTextFile(targets.path, JSON.stringify(config));
        await delay(1_000);
        // The maps still steer 32000 here, so the old routes serve it.
        assert.equal(await roundTrip(32000, ""), "b");
        await proxy.waitForLog(
          /Reload rejected.*held the lock on the BPF state .* for 3000 ms/,
        );
        await proxy.waitForLog(/Reload will be tried again/);
        assert.equal(await accepts(32001), false);
      } finally {
        unlock(lock);
        closeFd(lock);
      }
      await proxy.waitForLog(/The lock on the BPF state is free again/);
      await waitFor(() => accepts(32001), 5_000, "added port to accept");
      assert.equal(await roundTrip(32001, ""), "b");
      assert.equal(await accepts(32000), false, "removed port accepted");
    }
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name:
    "anyport --mode bpf routes port ranges of several apps through one socket",
  async fn() {
    await using targets = await nameTargets();
    const path = targets.path;
    {
      await using proxy = startBpfProxy(path);
      await proxy.waitForLog(/Started in bpf mode: 2 apps on 2001 ports/);
      for (let i = 0; i < 40; i++) {
        const port = A_PORTS.first + Math.floor(Math.random() * 1000);
        assert.equal(await roundTrip(port, ""), "a", `port ${port}`);
        const other = B_PORTS.first + Math.floor(Math.random() * 1000);
        assert.equal(
          await roundTrip(other, "", "::1"),
          "b",
          `port ${other} on ::1`,
        );
      }
      assert.equal(await roundTrip(32000, ""), "b");
      assert.equal(await accepts(32001), false, "unconfigured port accepted");
      assert.equal(await proxy.stop("SIGTERM"), 0);
      assert.match(proxy.stderr, /BPF steering stays attached/);
    }
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name: "anyport restart in BPF mode hands over with no failed connection",
  async fn() {
    await using targets = await nameTargets();
    const path = targets.path;
    await using first = startBpfProxy(path);
    await first.waitForLog(/Started in bpf mode/);

    let stop = false;
    let ok = 0;
    const failures: string[] = [];
    const clients = Array.from({ length: 4 }, async () => {
      while (!stop) {
        const port = A_PORTS.first + Math.floor(Math.random() * 1000);
        try {
          const reply = await roundTrip(port, "");
          if (reply === "a") ok++;
          else failures.push(`port ${port}: reply "${reply}"`);
        } catch (error) {
          failures.push(`port ${port}: ${error}`);
        }
      }
    });
    await delay(300);
    await using second = startBpfProxy(path);
    await second.waitForLog(/Started in bpf mode/);
    await delay(300);
    assert.equal(await first.stop("SIGTERM"), 0);
    await delay(300);
    stop = true;
    await Promise.all(clients);
    assert.deepEqual(failures, []);
    assert.ok(ok > 50, `only ${ok} connections during the handover`);
    assert.equal(await second.stop("SIGTERM"), 0);
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name: "anyport in BPF mode restarts after kill -9 with no clean-up",
  async fn() {
    await using targets = await nameTargets();
    const path = targets.path;
    {
      await using killed = startBpfProxy(path);
      await killed.waitForLog(/Started in bpf mode/);
      assert.equal(await roundTrip(A_PORTS.first, ""), "a");
      await killed.stop("SIGKILL");
    }
    // With the socket gone the program refuses steered ports.
    assert.equal(await accepts(A_PORTS.first), false);
    {
      await using restarted = startBpfProxy(path);
      await restarted.waitForLog(/Started in bpf mode/);
      await waitFor(() => accepts(A_PORTS.first), 2_000, "steering to resume");
      assert.equal(await roundTrip(A_PORTS.last, ""), "a");
      assert.equal(await restarted.stop("SIGTERM"), 0);
    }
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name: "anyport in BPF mode names the build step for an invalid object",
  async fn() {
    requireTestNamespace();
    // A copy of the program whose BPF object is cut short.
    const copy = await Deno.makeTempDir({ prefix: "anyport-test-" });
    try {
      for (const name of ["main.ts", "deno.json", "deno.lock"]) {
        await Deno.copyFile(`${ROOT}${name}`, `${copy}/${name}`);
      }
      for (const dir of ["cli", "ebpf", "ffi", "proxy"]) {
        await copyDir(`${ROOT}${dir}`, `${copy}/${dir}`);
      }
      const object = await Deno.readFile(`${ROOT}ebpf/steer.bpf.o`);
      await Deno.writeFile(`${copy}/ebpf/steer.bpf.o`, object.subarray(0, 64));
      const path = await writeConfigFile(
        bpfConfig("a.invalid:1", "b.invalid:1"),
      );
      const { code, stderr } = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-all", `${copy}/main.ts`, "-c", path],
        stdout: "null",
        stderr: "piped",
      }).output();
      const text = new TextDecoder().decode(stderr);

      assert.equal(code, 1, text);
      assert.match(text, /ebpf\/steer\.bpf\.o built into anyport is invalid/);
      assert.match(text, /rebuild it with ebpf\/build\.sh/);
      assert.doesNotMatch(text, /libbpf: libbpf:/);
    } finally {
      await Deno.remove(copy, { recursive: true });
      await detachAll();
    }
  },
});

async function copyDir(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const entry of Deno.readDir(from)) {
    if (entry.isDirectory) {
      await copyDir(`${from}/${entry.name}`, `${to}/${entry.name}`);
    } else if (entry.isFile) {
      await Deno.copyFile(`${from}/${entry.name}`, `${to}/${entry.name}`);
    }
  }
}

Deno.test({
  ...BPF,
  name:
    "anyport in BPF mode reloads a changed ListenAddress, which it does not use",
  async fn() {
    requireTestNamespace();
    await using a = nameServer("a");
    await using b = nameServer("b");
    const config = bpfConfig(a.target, b.target);
    const path = await writeConfigFile(config);
    await using proxy = startBpfProxy(path);
    await proxy.waitForLog(/Started in bpf mode/);
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        ...config,
        ListenAddress: "::2",
        ConnectTimeoutMs: 600,
      }),
    );

    await proxy.waitForLog(/Reloaded .*ConnectTimeoutMs: 500 -> 600/);
    assert.doesNotMatch(proxy.stderr, /Reload rejected/);
    assert.equal(await roundTrip(A_PORTS.first, ""), "a");
    assert.equal(await proxy.stop("SIGTERM"), 0);
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name: "anyport in BPF mode serves queued connections when it stops",
  async fn() {
    await using targets = await nameTargets();
    const path = targets.path;
    await using proxy = startBpfProxy(path);
    await proxy.waitForLog(/Started in bpf mode/);
    // A process stopped with SIGSTOP accepts nothing, so these connections
    // wait in the accept queue.
    proxy.child.kill("SIGSTOP");
    const conns = await Promise.all(
      Array.from({ length: 8 }, (_, i) => connect(A_PORTS.first + i)),
    );
    proxy.child.kill("SIGTERM");
    proxy.child.kill("SIGCONT");
    const replies = await Promise.all(conns.map(async (conn) => {
      try {
        await conn.closeWrite();
        return new TextDecoder().decode(await readAll(conn));
      } catch (error) {
        return String(error);
      } finally {
        closeQuietly(conn);
      }
    }));
    assert.deepEqual(replies, new Array(8).fill("a"));
    assert.equal(await proxy.stop("SIGTERM"), 0);
    await detachAll();
  },
});

for (const signal of ["SIGTERM", "SIGKILL"] as const) {
  Deno.test({
    ...BPF,
    name:
      `anyport in BPF mode takes steering back without a refusal after ${signal}`,
    async fn() {
      requireTestNamespace();
      await using targets = await nameTargets();
      const path = targets.path;
      await using older = startBpfProxy(path);
      await older.waitForLog(/Started in bpf mode/);
      const replies: string[] = [];
      {
        await using newer = startBpfProxy(path);
        await newer.waitForLog(/Started in bpf mode/);
        await older.waitForLog(/Another anyport process took steering over/);
        // The older socket becomes the standby socket at the ownership check
        // after that.
        await delay(150);
        let probing = true;
        // Four clients at a time, so that connections are queued on the
        // newer process's socket when it stops.
        const probe = Promise.all(Array.from({ length: 4 }, async () => {
          while (probing) {
            replies.push(
              await roundTrip(A_PORTS.first + 7, "")
                .catch((error) => (error as Error).name),
            );
          }
        }));
        await delay(50);
        await newer.stop(signal);
        await older.waitForLog(/Took steering back/, 2_000);
        await delay(50);
        probing = false;
        await probe;
        if (signal === "SIGTERM") {
          assert.match(
            newer.stderr,
            /Handed steering to the anyport process standing by/,
          );
          assert.doesNotMatch(newer.stderr, /BPF steering stays attached/);
        }
      }
      await older.waitForLog(
        /Took steering back.*steering this process's \d+ ports on 127\.0\.0\.1\/32, ::1\/128/,
      );
      // A kill resets the connections queued on the killed socket; a stop
      // accepts them first.
      const failed = replies.filter((reply) =>
        reply !== "a" && (signal === "SIGTERM" || reply === "ConnectionRefused")
      );
      assert.deepEqual(failed, [], `replies: ${replies.join(" ")}`);
      assert.ok(replies.length > 10, `replies: ${replies.join(" ")}`);
      assert.equal(await older.stop("SIGTERM"), 0);
      await detachAll();
    },
  });
}

Deno.test({
  ...BPF,
  name: "anyport in BPF mode hands steering back to the newest process",
  async fn() {
    requireTestNamespace();
    await using a = nameServer("a");
    await using b = nameServer("b");
    const config = bpfConfig(a.target, b.target);
    const path = await writeConfigFile(config);
    // Only the middle process serves port 32001.
    const middlePath = await writeConfigFile({
      ...config,
      Apps: [...config.Apps, {
        Name: "c",
        Ports: [32001],
        Targets: [b.target],
      }],
    });

    await using oldest = startBpfProxy(path);
    await oldest.waitForLog(/Started in bpf mode/);
    await using middle = startBpfProxy(middlePath);
    await middle.waitForLog(/Started in bpf mode/);
    await oldest.waitForLog(/Another anyport process took steering over/);
    {
      await using newest = startBpfProxy(path);
      await newest.waitForLog(/Started in bpf mode/);
      await middle.waitForLog(/Another anyport process took steering over/);
      // Gives the oldest process an ownership check that finds the newest.
      await delay(200);
      newest.child.kill("SIGKILL");
      await newest.child.status;
    }

    await middle.waitForLog(/Took steering back/, 2_000);
    assert.equal(await roundTrip(32001, ""), "b");
    await delay(300);
    assert.doesNotMatch(oldest.stderr, /Took steering back/);

    assert.equal(await middle.stop("SIGTERM"), 0);
    await oldest.waitForLog(/Took steering back/, 2_000);
    assert.equal(await oldest.stop("SIGTERM"), 0);
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name: "anyport in BPF mode leaves prefixes to the newer process",
  async fn() {
    await using targets = await nameTargets();
    const path = targets.path;
    const newerPath = await writeConfigFile({
      ...targets.config,
      SteerPrefixes: ["127.0.0.1/32"],
    });
    await using older = startBpfProxy(path);
    await older.waitForLog(/Started in bpf mode/);
    {
      await using newer = startBpfProxy(newerPath);
      await newer.waitForLog(/Started in bpf mode/);
      await older.waitForLog(/Another anyport process took steering over/);
      older.child.kill("SIGHUP");
      await older.waitForLog(/Reloaded/);
      assert.deepEqual(await steeredPrefixes(), ["127.0.0.1/32"]);
      assert.equal(await newer.stop("SIGTERM"), 0);
    }
    await older.waitForLog(/Took steering back/, 2_000);
    assert.deepEqual(await steeredPrefixes(), ["127.0.0.1/32", "::1/128"]);
    assert.equal(await older.stop("SIGTERM"), 0);
    await detachAll();
  },
});

Deno.test({
  name: "anyport in BPF mode logs changed prefixes",
  async fn() {
    requireTestNamespace();
    await using a = nameServer("a");
    await using b = nameServer("b");
    const config = bpfConfig(a.target, b.target);
    const path = await writeConfigFile(config);
    await using proxy = startBpfProxy(path);
    await proxy.waitForLog(/Started in bpf mode/);
    const logged = () => proxy.stderr.match(/Steered prefixes: .*/g) ?? [];
    assert.deepEqual(logged().length, 1, proxy.stderr);

    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...config, ConnectTimeoutMs: 600 }),
    );
    proxy.child.kill("SIGHUP");
    await proxy.waitForLog(/Reloaded/);
    assert.deepEqual(logged().length, 1, proxy.stderr);

    await Deno.writeTextFile(
      path,
      JSON.stringify({ ...config, SteerPrefixes: ["127.0.0.1/32"] }),
    );
    proxy.child.kill("SIGHUP");
    await waitFor(() => logged().length === 2, 5_000, "a second prefix line");
    assert.match(logged()[1]!, /Steered prefixes: "?127\.0\.0\.1\/32"?$/);
    assert.equal(await proxy.stop("SIGTERM"), 0);
    await detachAll();
  },
});

/** Reads the prefixes in the pinned maps with `anyport bpf status --json`. */
async function steeredPrefixes(): Promise<string[]> {
  const { code, stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", `${ROOT}main.ts`, "bpf", "status", "--json"],
    stdout: "piped",
    stderr: "null",
  }).output();
  assert.equal(code, 0, "bpf status failed");
  const status = JSON.parse(new TextDecoder().decode(stdout));
  return [...status.prefixes].sort();
}

Deno.test({
  ...BPF,
  name: "anyport in BPF mode logs a detach from outside",
  async fn() {
    await using targets = await nameTargets();
    const path = targets.path;
    await using proxy = startBpfProxy(path);
    await proxy.waitForLog(/Started in bpf mode/);
    await detachAll();
    await proxy.waitForLog(/BPF steering was detached/, 2_000);
    assert.equal(await proxy.stop("SIGTERM"), 0);
    assert.doesNotMatch(proxy.stderr, /BPF steering stays attached/);
  },
});

Deno.test({
  ...BPF,
  name: "anyport in BPF mode logs the original destination of each connection",
  async fn() {
    await using targets = await nameTargets();
    const path = targets.path;
    await using proxy = new ProxyProcess(
      path,
      ["--log-level", "info"],
      undefined,
      [
        "--allow-all",
      ],
    );
    await proxy.waitForLog(/Started in bpf mode/);
    assert.equal(await roundTrip(A_PORTS.first + 3, ""), "a");
    await proxy.waitForLog(
      new RegExp(`-> 127\\.0\\.0\\.1:${A_PORTS.first + 3} \\(a\\) via `),
    );
    // A connection to the socket itself, not to a steered port.
    const socket =
      /Steering to proxy socket (?:\[::ffff:)?127\.0\.0\.1\]?:(\d+)/
        .exec(proxy.stderr);
    assert.ok(socket, proxy.stderr);
    await roundTrip(Number(socket[1]), "").catch(() => "");
    await proxy.waitForLog(
      /Closed a connection from 127\.0\.0\.1:\d+ to the proxy socket's own port \d+/,
    );
    assert.equal(await proxy.stop("SIGTERM"), 0);
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name: "anyport takes over without naming the older proxy socket",
  async fn() {
    requireTestNamespace();
    await using a = nameServer("a");
    await using b = nameServer("b");
    const config = bpfConfig(a.target, b.target);
    await using older = startBpfProxy(await writeConfigFile(config));
    await older.waitForLog(/Started in bpf mode/);
    const socket =
      /Steering to proxy socket (?:\[::ffff:)?127\.0\.0\.1\]?:(\d+)/
        .exec(older.stderr);
    assert.ok(socket, older.stderr);
    // The newer config steers the port of the older process's socket.
    const port = Number(socket[1]);
    const apps = [...config.Apps, {
      Name: "c",
      Ports: [port],
      Targets: [a.target],
    }];
    const path = await writeConfigFile({ ...config, Apps: apps });
    await using newer = startBpfProxy(path);
    await newer.waitForLog(/Started in bpf mode/);

    assert.doesNotMatch(newer.stderr, /Other sockets listen on steered ports/);
    assert.equal(await newer.stop("SIGTERM"), 0);
    assert.equal(await older.stop("SIGTERM"), 0);
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name: "anyport warns of other listeners on steered ports",
  async fn() {
    requireTestNamespace();
    await using a = nameServer("a");
    await using b = nameServer("b");
    const port = A_PORTS.first + 5;
    using _other = Deno.listen({ hostname: "127.0.0.1", port });
    const path = await writeConfigFile(bpfConfig(a.target, b.target));
    await using proxy = startBpfProxy(path);
    await proxy.waitForLog(/Started in bpf mode/);
    assert.match(
      proxy.stderr,
      new RegExp(
        `Other sockets listen on steered ports \\(127\\.0\\.0\\.1:${port}\\)\\. `,
      ),
    );
    // The kernel steers before it looks for a listener.
    assert.equal(await roundTrip(port, ""), "a");
    assert.equal(await proxy.stop("SIGTERM"), 0);
    await detachAll();
  },
});

Deno.test({
  ...BPF,
  name: "anyport warns in listeners mode of steering left attached",
  async fn() {
    await using targets = await nameTargets();
    const path = targets.path;
    const listenersMode = () =>
      new ProxyProcess(
        path,
        ["--mode", "listeners", "--log-level", "info", "--no-access-log"],
        undefined,
        // The permissions of `deno task start`, without --allow-all.
        ["--allow-net", "--allow-read", "--allow-ffi"],
      );
    {
      await using killed = startBpfProxy(path);
      await killed.waitForLog(/Started in bpf mode/);
      await killed.stop("SIGKILL");
    }
    {
      await using listeners = listenersMode();
      await listeners.waitForLog(/Started in listeners mode/);
      assert.match(listeners.stderr, /BPF steering of an earlier BPF-mode run/);
      // The killed run's socket left the sockmap with its process.
      assert.match(
        listeners.stderr,
        /takes \d+ ports of this config \([^)]+\): connections to them are refused \(no proxy socket is in its sockmap\) instead of reaching these listeners/,
      );
      assert.equal(await listeners.stop("SIGTERM"), 0);
    }
    await detachAll();
    {
      await using listeners = listenersMode();
      await listeners.waitForLog(/Started in listeners mode/);
      assert.equal(await roundTrip(A_PORTS.first, ""), "a");
      assert.doesNotMatch(listeners.stderr, /BPF steering of an earlier/);
    }
  },
});
