import assert from "node:assert/strict";
import { otherSkLookupLinks } from "./sk_lookup_links.ts";
import { attachSteering, netnsInode } from "./pinned_state.ts";
import { NEEDS_ROOT, TestPinRoot } from "./_test_helpers.ts";

Deno.test(
  "otherSkLookupLinks() finds a second steering link in the namespace",
  NEEDS_ROOT,
  () => {
    using first = new TestPinRoot();
    using second = new TestPinRoot();
    using a = attachSteering(first.path);
    const own = a.linkInfo().id;
    assert.deepEqual(otherSkLookupLinks(netnsInode(), own), []);

    // As a second anyport does that pins into another bpffs.
    using b = attachSteering(second.path);
    const other = b.linkInfo();

    assert.deepEqual(otherSkLookupLinks(netnsInode(), own), [
      { id: other.id, programId: other.programId },
    ]);
    assert.deepEqual(otherSkLookupLinks(netnsInode(), other.id), [
      { id: own, programId: a.linkInfo().programId },
    ]);
  },
);
