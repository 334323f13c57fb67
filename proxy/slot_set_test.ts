import assert from "node:assert/strict";
import { SlotSet } from "./slot_set.ts";

interface Item {
  name: string;
  slot: number;
}

function item(name: string): Item {
  return { name, slot: -1 };
}

Deno.test("SlotSet adds and deletes in any order", () => {
  const set = new SlotSet<Item>();
  const [a, b, c, d] = [item("a"), item("b"), item("c"), item("d")];
  for (const x of [a, b, c, d]) set.add(x);
  assert.equal(set.size, 4);
  assert.equal(set.delete(b), true);
  assert.equal(set.delete(a), true);
  assert.deepEqual(set.toArray().map((x) => x.name).sort(), ["c", "d"]);
  assert.equal(a.slot, -1);
  assert.equal(b.slot, -1);
  assert.equal(set.delete(d), true);
  assert.equal(set.delete(c), true);
  assert.equal(set.size, 0);
});

Deno.test("SlotSet ignores repeated adds and deletes", () => {
  const set = new SlotSet<Item>();
  const a = item("a");
  const b = item("b");
  set.add(a);
  set.add(a);
  set.add(b);
  assert.equal(set.size, 2);
  assert.equal(set.delete(a), true);
  assert.equal(set.delete(a), false);
  assert.deepEqual(set.toArray(), [b]);
});

Deno.test("SlotSet refuses items of another set", () => {
  const first = new SlotSet<Item>();
  const second = new SlotSet<Item>();
  const a = item("a");
  const b = item("b");
  first.add(a);
  second.add(b);
  assert.equal(second.delete(a), false);
  assert.equal(first.size, 1);
  assert.equal(second.size, 1);
});

Deno.test("SlotSet snapshot ignores later changes", () => {
  const set = new SlotSet<Item>();
  const items = [item("a"), item("b"), item("c")];
  for (const x of items) set.add(x);
  const snapshot = set.toArray();
  for (const x of snapshot) set.delete(x);
  assert.equal(snapshot.length, 3);
  assert.equal(set.size, 0);
});
