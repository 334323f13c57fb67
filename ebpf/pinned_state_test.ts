import assert from "node:assert/strict";
import {
  attachSteering,
  netnsInode,
  openPinnedState,
  statePath,
} from "./pinned_state.ts";
import { NEEDS_ROOT, ROOT, TestPinRoot } from "./_test_helpers.ts";
import { objPin } from "../ffi/bpf_fd.ts";

Deno.test(
  "attachSteering() reuses pinned maps and their contents",
  NEEDS_ROOT,
  () => {
    using root = new TestPinRoot();
    {
      using state = attachSteering(root.path);
      state.maps.addPorts([8080, 8443]);
    }
    using state = attachSteering(root.path);
    assert.deepEqual(state.maps.readPorts(), new Set([8080, 8443]));
    assert.equal(state.linkInfo().netnsInode, netnsInode());
  },
);

Deno.test(
  "attachSteering() rejects pinned maps of another layout",
  NEEDS_ROOT,
  () => {
    using root = new TestPinRoot();
    const path = statePath(root.path);
    {
      using state = attachSteering(root.path);
      Deno.removeSync(`${path}/ports`);
      objPin(state.maps.fd("counters"), `${path}/ports`);
    }

    assert.throws(() => attachSteering(root.path), {
      message:
        `Cannot open the BPF state pinned in "${path}": Cannot use BPF ` +
        'map "ports": map "ports" has type 6, expected 1; remove it with ' +
        '"anyport bpf detach"',
    });
  },
);

Deno.test(
  "attachSteering() removes pins of a process that died",
  NEEDS_ROOT,
  () => {
    using root = new TestPinRoot();
    Deno.mkdirSync(root.path, { mode: 0o700 });
    // No process can have this pid: it exceeds the kernel's PID_MAX_LIMIT.
    const stale = `${root.path}/tmp-${netnsInode()}-4194305`;
    Deno.mkdirSync(stale, { mode: 0o700 });

    using _state = attachSteering(root.path);
    assert.throws(() => Deno.statSync(stale), Deno.errors.NotFound);
  },
);

Deno.test(
  "attachSteering() replaces the state of a gone namespace",
  NEEDS_ROOT,
  async () => {
    using root = new TestPinRoot();
    // A child in a network namespace of its own pins its state, then exits,
    // which destroys the namespace and leaves its link defunct.
    const child = await new Deno.Command("unshare", {
      args: [
        "--net",
        Deno.execPath(),
        "run",
        "-A",
        `${ROOT}ebpf/testdata/attach_and_exit.ts`,
        root.path,
      ],
    }).output();
    assert.equal(child.code, 0, new TextDecoder().decode(child.stderr));
    const [entry] = [...Deno.readDirSync(root.path)];
    assert.ok(entry !== undefined);
    assert.notEqual(entry.name, `${netnsInode()}`);
    Deno.renameSync(`${root.path}/${entry.name}`, statePath(root.path));
    {
      using defunct = openPinnedState(statePath(root.path));
      // The kernel destroys a namespace on a work queue, after its last
      // process exited, so the link turns defunct a moment later.
      const deadline = Date.now() + 5_000;
      while (
        defunct?.linkInfo().netnsInode !== 0 && Date.now() < deadline
      ) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      assert.equal(defunct?.linkInfo().netnsInode, 0);
    }

    using state = attachSteering(root.path);
    assert.equal(state.linkInfo().netnsInode, netnsInode());
    assert.deepEqual(state.maps.readPorts(), new Set());
  },
);
