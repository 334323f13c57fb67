import assert from "node:assert/strict";
import { counted, firstOf } from "./plural.ts";

Deno.test("counted() uses the singular for one only", () => {
  assert.equal(counted(0, "port"), "0 ports");
  assert.equal(counted(1, "port"), "1 port");
  assert.equal(counted(2, "problem"), "2 problems");
});

Deno.test("firstOf() counts the items past the first ones", () => {
  assert.equal(firstOf(["a", "b"], 2), "a, b");
  assert.equal(firstOf(["a", "b", "c", "d"], 2), "a, b and 2 more");
  assert.equal(firstOf([], 2), "");
});
