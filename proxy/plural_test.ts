import assert from "node:assert/strict";
import { counted } from "./plural.ts";

Deno.test("counted() uses the singular for one only", () => {
  assert.equal(counted(0, "port"), "0 ports");
  assert.equal(counted(1, "port"), "1 port");
  assert.equal(counted(2, "problem"), "2 problems");
});
