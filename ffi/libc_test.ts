import assert from "node:assert/strict";
import { closeFd, openReadOnly, OsError } from "./libc.ts";

Deno.test("openReadOnly() opens and closeFd() closes a file", () => {
  const fd = openReadOnly("/proc/self/ns/net");
  assert.ok(fd > 2);
  closeFd(fd);
  assert.throws(() => closeFd(fd), OsError);
});

Deno.test("openReadOnly() names the missing path", () => {
  assert.throws(() => openReadOnly("/nonexistent/anyport"), {
    message: 'open "/nonexistent/anyport": No such file or directory',
  });
});
