import assert from "node:assert/strict";
import { type BpfCommandOutput, runBpfCommand } from "./bpf.ts";
import type { BpfStatus } from "./bpf_status.ts";
import { BpfFrontend } from "../proxy/bpf_frontend.ts";
import { attachSteering } from "../ebpf/pinned_state.ts";
import { parsePrefix } from "../proxy/prefix.ts";
import {
  NEEDS_ROOT,
  reply,
  request,
  requireTestNamespace,
  TestPinRoot,
} from "../ebpf/_test_helpers.ts";

Deno.test(
  "runBpfCommand() status reports ports, prefixes and counters",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using frontend = openFrontend(root.path);
    await frontend.apply([
      { first: 20000, last: 20099 },
      { first: 20200, last: 20200 },
    ]);
    for (const port of [20000, 20050, 20200]) {
      assert.equal(await request("127.0.0.1", port), "ok");
    }

    const json = await run(["status", "--json", "--pin-root", root.path]);
    assert.equal(json.code, 0, json.error);
    const status = JSON.parse(json.log) as BpfStatus;
    assert.equal(status.attached, true);
    assert.deepEqual(status.ports, ["20000-20099", "20200"]);
    assert.equal(status.portCount, 101);
    assert.deepEqual(status.prefixes, ["127.0.0.1/32", "::1/128"]);
    assert.equal(status.socket?.present, true);
    assert.ok((status.link?.programId ?? 0) > 0);
    assert.equal(status.link?.netnsInode, status.netnsInode);
    assert.ok((status.counters?.steered ?? 0) >= 3, json.log);
    assert.equal(status.counters?.noSocket, 0);

    const text = await run(["status", `--pin-root=${root.path}`]);
    assert.equal(text.code, 0, text.error);
    assert.match(text.log, /ports: +101 \(20000-20099, 20200\)/);
    assert.match(text.log, /prefixes: +127\.0\.0\.1\/32, ::1\/128/);
    assert.match(text.log, /socket: +present/);
  },
);

Deno.test(
  "runBpfCommand() status reports a missing socket",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const frontend = openFrontend(root.path);
    await frontend.apply([{ first: 20300, last: 20300 }]);
    await frontend.close();
    assert.equal(await request("127.0.0.1", 20300), "ConnectionRefused");

    const text = await run(["status", "--pin-root", root.path]);
    assert.equal(text.code, 3, text.error);
    assert.match(text.log, /socket: +missing: steered connections are refused/);
    assert.match(text.log, /no socket 1,/);
  },
);

Deno.test(
  "runBpfCommand() status reports the standby socket",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using older = openFrontend(root.path);
    await older.apply([{ first: 20350, last: 20350 }]);
    await using newer = openFrontend(root.path);
    await newer.apply([{ first: 20350, last: 20350 }]);
    // The older socket becomes the standby socket at its next check.
    await waitFor(async () =>
      /standby: +present \(cookie \d+\)/.test(
        (await run(["status", "--pin-root", root.path])).log,
      )
    );

    await newer.close();
    const text = await run(["status", "--pin-root", root.path]);
    assert.equal(text.code, 0, text.error);
    assert.match(
      text.log,
      /socket: +(present|missing: the standby socket takes steered connections)/,
    );
  },
);

Deno.test(
  "runBpfCommand() status names a steering link without pins",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    using other = new TestPinRoot();
    // What an anyport whose pins were removed leaves: a link that only its
    // process holds.
    using state = attachSteering(other.path);
    Deno.removeSync(state.path, { recursive: true });

    const text = await run(["status", "--pin-root", root.path]);
    assert.equal(text.code, 3, text.error);
    assert.match(
      text.log,
      new RegExp(
        `sk_lookup links are attached without pins there: link ${state.linkInfo().id} `,
      ),
    );
  },
);

Deno.test(
  "runBpfCommand() status reports when nothing is pinned",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const text = await run(["status", "--pin-root", root.path]);
    assert.equal(text.code, 3, text.error);
    assert.match(text.log, /^No BPF steering in network namespace \d+/);

    const json = await run(["status", "--json", "--pin-root", root.path]);
    assert.equal(json.code, 3, json.error);
    assert.equal((JSON.parse(json.log) as BpfStatus).attached, false);
  },
);

Deno.test(
  "runBpfCommand() detach leaves no link or pin behind",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    const frontend = openFrontend(root.path);
    await frontend.apply([{ first: 20400, last: 20400 }]);
    await frontend.close();
    const before = await run(["status", "--json", "--pin-root", root.path]);
    const status = JSON.parse(before.log) as BpfStatus;
    const linkId = status.link?.id;
    const programId = status.link?.programId;
    assert.ok(linkId !== undefined, before.log);
    assert.ok(programId !== undefined, before.log);

    const detach = await run(["detach", "--pin-root", root.path]);
    assert.equal(detach.code, 0, detach.error);
    assert.equal(
      detach.log,
      `Detached BPF steering and removed ${status.path}`,
    );

    assert.equal(await exists(root.path), false);
    await waitFor(async () =>
      !(await bpftoolIds(["link", "list"])).has(linkId)
    );
    await waitFor(async () =>
      !(await bpftoolIds(["prog", "show"])).has(programId)
    );
    const again = await run(["detach", "--json", "--pin-root", root.path]);
    assert.equal(again.code, 0, again.error);
    assert.deepEqual(JSON.parse(again.log), {
      detached: false,
      path: status.path,
    });
  },
);

Deno.test(
  "runBpfCommand() detach stops a running proxy's steering",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    await using frontend = openFrontend(root.path);
    await frontend.apply([{ first: 20500, last: 20500 }]);
    assert.equal(await request("127.0.0.1", 20500), "ok");

    const detach = await run(["detach", "--pin-root", root.path]);
    assert.equal(detach.code, 0, detach.error);
    assert.equal(await request("127.0.0.1", 20500), "ConnectionRefused");
  },
);

Deno.test("runBpfCommand() prints the usage for --help", async () => {
  for (const args of [["--help"], ["status", "--help"], ["detach", "-h"]]) {
    const result = await run(args);
    assert.equal(result.code, 0, args.join(" "));
    assert.ok(result.log.startsWith("Usage: anyport bpf"), result.log);
  }
});

Deno.test("runBpfCommand() rejects invalid arguments", async () => {
  for (
    const [args, message] of [
      [[], "Missing command: use status or detach"],
      [["attach"], 'Unknown command "attach": use status or detach'],
      [["status", "--verbose"], 'Unknown option "--verbose"'],
      [["status", "--pin-root"], "Missing value for --pin-root"],
    ] as const
  ) {
    const result = await run([...args]);
    assert.equal(result.code, 2, args.join(" "));
    assert.ok(result.error.startsWith(message), result.error);
    assert.ok(result.error.includes("Usage: anyport bpf"), result.error);
  }
});

Deno.test(
  "runBpfCommand() status names a missing bpffs",
  NEEDS_ROOT,
  async () => {
    requireTestNamespace();
    const pinRoot = await Deno.makeTempDir();
    try {
      const result = await run(["status", "--pin-root", pinRoot]);
      assert.equal(result.code, 1);
      assert.ok(
        result.error.startsWith("anyport bpf status: Cannot read BPF state"),
        result.error,
      );
      assert.ok(result.error.includes("mount -t bpf bpf /sys/fs/bpf"));
    } finally {
      await Deno.remove(pinRoot);
    }
  },
);

/** Runs the command and collects what it prints. */
async function run(
  args: string[],
): Promise<{ code: number; log: string; error: string }> {
  const log: string[] = [];
  const error: string[] = [];
  const output: BpfCommandOutput = {
    log: (text) => log.push(text),
    error: (text) => error.push(text),
  };
  const code = await runBpfCommand(args, output);
  return { code, log: log.join("\n"), error: error.join("\n") };
}

/** BpfFrontend for 127.0.0.1 and ::1 that replies "ok" and closes. */
function openFrontend(pinRoot: string): BpfFrontend {
  return BpfFrontend.open({
    prefixes: [parsePrefix("127.0.0.1/32"), parsePrefix("::1/128")],
    pinRoot,
    onConn: (conn) => void reply(conn, "ok"),
  });
}

/** Returns the ids that `bpftool -j <args>` lists. */
async function bpftoolIds(args: string[]): Promise<Set<number>> {
  const output = await new Deno.Command("bpftool", { args: ["-j", ...args] })
    .output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
  const list = JSON.parse(new TextDecoder().decode(output.stdout)) as {
    id: number;
  }[];
  return new Set(list.map((entry) => entry.id));
}

/** Polls `condition` for up to 2 s: the kernel frees programs after RCU. */
async function waitFor(condition: () => Promise<boolean>): Promise<void> {
  const deadline = Date.now() + 2000;
  while (!(await condition())) {
    assert.ok(Date.now() < deadline, `timed out waiting for ${condition}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}
