import assert from "node:assert/strict";
import { AddressPreference } from "./address_preference.ts";

const ADDRESSES = ["192.0.2.1", "192.0.2.2", "192.0.2.3"];

Deno.test("AddressPreference keeps the order without a record", () => {
  const preference = new AddressPreference();

  assert.equal(preference.order("name.test 80", ADDRESSES), ADDRESSES);
});

Deno.test("AddressPreference puts the last connected address first", () => {
  const preference = new AddressPreference();

  preference.remember("name.test 80", "192.0.2.3");

  assert.deepEqual(preference.order("name.test 80", ADDRESSES), [
    "192.0.2.3",
    "192.0.2.1",
    "192.0.2.2",
  ]);
  assert.equal(preference.order("other.test 80", ADDRESSES), ADDRESSES);
});

Deno.test("AddressPreference forgets an address no longer listed", () => {
  const preference = new AddressPreference();
  preference.remember("name.test 80", "192.0.2.9");

  assert.equal(preference.order("name.test 80", ADDRESSES), ADDRESSES);
  preference.remember("name.test 80", "192.0.2.2");
  assert.equal(preference.order("name.test 80", ADDRESSES)[0], "192.0.2.2");
});

Deno.test("AddressPreference starts over at its limit", () => {
  const preference = new AddressPreference(2);
  preference.remember("a.test 80", "192.0.2.2");
  preference.remember("b.test 80", "192.0.2.2");

  preference.remember("c.test 80", "192.0.2.3");

  assert.equal(preference.order("a.test 80", ADDRESSES), ADDRESSES);
  assert.equal(preference.order("c.test 80", ADDRESSES)[0], "192.0.2.3");
});
