import assert from "node:assert/strict";
import { ReloadRetry } from "./reload_retry.ts";

Deno.test("ReloadRetry doubles its wait up to the maximum", () => {
  const retry = new ReloadRetry(() => {}, 10_000);
  try {
    assert.deepEqual(
      [retry.schedule(), retry.schedule(), retry.schedule()],
      [10_000, 20_000, 30_000],
    );
    retry.reset();
    assert.equal(retry.schedule(), 10_000);
  } finally {
    retry.cancel();
  }
});

Deno.test("ReloadRetry reloads once per schedule", async () => {
  let reloads = 0;
  const retry = new ReloadRetry(() => reloads++, 10);
  retry.schedule();
  retry.schedule();
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(reloads, 1);

  retry.schedule();
  retry.cancel();
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(reloads, 1);
});
