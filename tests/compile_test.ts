import assert from "node:assert/strict";
import { requireTestNamespace } from "../ebpf/_test_helpers.ts";
import { freePort, ROOT } from "./helpers.ts";

/**
 * `deno compile` downloads its runtime (denort) unless `DENORT_BIN` names
 * one or a download is cached, so the compile test runs only then.
 */
function denortAvailable(): boolean {
  if (Deno.env.get("DENORT_BIN")) return true;
  const cache = Deno.env.get("DENO_DIR") ??
    `${Deno.env.get("HOME")}/.cache/deno`;
  try {
    for (
      const entry of Deno.readDirSync(
        `${cache}/dl/release/v${Deno.version.deno}`,
      )
    ) {
      if (entry.name.startsWith("denort-")) return true;
    }
  } catch {
    // No cache directory.
  }
  return false;
}

Deno.test({
  name: "deno task compile builds a binary that runs without the source tree" +
    (denortAvailable()
      ? ""
      : " (skipped: deno compile must download denort, and this machine cannot)"),
  ignore: !denortAvailable(),
  async fn() {
    const build = await new Deno.Command("deno", {
      args: ["task", "compile"],
      cwd: ROOT,
      stdout: "null",
      stderr: "piped",
    }).output();
    assert.ok(build.success, new TextDecoder().decode(build.stderr));
    const run = await new Deno.Command(`${ROOT}dist/anyport`, {
      args: ["check", "--config", `${ROOT}config.json`],
      cwd: "/",
      stdout: "piped",
    }).output();
    assert.equal(run.code, 0);
    assert.match(new TextDecoder().decode(run.stdout), /valid, 3 apps/);
  },
});

Deno.test({
  name: "BPF mode loads the embedded object, not a file of the source tree",
  ignore: Deno.uid() !== 0,
  async fn() {
    requireTestNamespace();
    const copy = await Deno.makeTempDir({ prefix: "anyport-tree-" });
    for (
      const item of [
        "deno.json",
        "deno.lock",
        "ebpf",
        "ffi",
        "proxy",
        "cli",
        "tests",
      ]
    ) {
      const { success } = await new Deno.Command("cp", {
        args: ["-r", `${ROOT}${item}`, `${copy}/`],
      }).output();
      assert.ok(success, `copy ${item}`);
    }
    const pinRoot = `/sys/fs/bpf/anyport-embedded-${
      crypto.randomUUID().slice(0, 8)
    }`;
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        "--cached-only",
        `${copy}/tests/testdata/embedded_object_child.ts`,
        pinRoot,
        String(freePort()),
      ],
      cwd: "/",
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    const first = await lines.read();
    assert.equal(first.value?.trim(), "ready");

    await Deno.remove(copy, { recursive: true });
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode("go\n"));
    await writer.close();

    let rest = "";
    for (;;) {
      const { value, done } = await lines.read();
      if (done) break;
      rest += value;
    }
    const { code } = await child.status;
    const stderr = await new Response(child.stderr).text();
    assert.equal(code, 0, stderr);
    assert.equal(rest.trim(), "steered");
  },
});
