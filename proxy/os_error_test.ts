import assert from "node:assert/strict";
import { withoutCall } from "./os_error.ts";

Deno.test("withoutCall() drops the call and path from a Deno file error", () => {
  let error: unknown;
  try {
    Deno.readTextFileSync("/nonexistent/anyport.json");
  } catch (caught) {
    error = caught;
  }
  assert.match(String((error as Error).message), /readfile '/);
  assert.equal(withoutCall(error), "No such file or directory (os error 2)");
});

Deno.test("withoutCall() keeps a message without a call", () => {
  assert.equal(withoutCall(new Error("is a directory")), "is a directory");
});
