import assert from "node:assert/strict";
import { explainMissingObject } from "./missing_object.ts";

Deno.test("explainMissingObject() names the build script", () => {
  const loader = new TypeError(
    'Module not found "file:///srv/anyport/ebpf/steer.bpf.o".',
  );
  const explained = explainMissingObject(loader) as Error;

  assert.match(explained.message, /not built: run ebpf\/build\.sh/);
  assert.equal(explained.cause, loader);
});

Deno.test("explainMissingObject() passes other errors on", () => {
  const other = new Error("permission denied");

  assert.equal(explainMissingObject(other), other);
});
