import assert from "node:assert/strict";
import { reachesProxy } from "./loop_check.ts";
import { parsePrefix } from "./prefix.ts";
import { DEFAULT_SETTINGS, type Settings } from "./settings.ts";

function listeners(listenAddress: string): Settings {
  return { ...DEFAULT_SETTINGS, listenAddress };
}

function bpf(...prefixes: string[]): Settings {
  return {
    ...DEFAULT_SETTINGS,
    mode: "bpf",
    steerPrefixes: prefixes.map(parsePrefix),
  };
}

const CASES: [string, Settings, string, boolean][] = [
  ["listening on ::", listeners("::"), "127.0.0.9", true],
  ["listening on ::", listeners("::"), "::1", true],
  ["listening on ::", listeners("::"), "192.0.2.1", false],
  ["listening on ::", listeners("::"), "backend.example", false],
  ["listening on 0.0.0.0", listeners("0.0.0.0"), "127.0.0.9", true],
  ["listening on 0.0.0.0", listeners("0.0.0.0"), "::ffff:127.0.0.1", true],
  ["listening on 0.0.0.0", listeners("0.0.0.0"), "::1", false],
  ["listening on 127.0.0.1", listeners("127.0.0.1"), "127.0.0.1", true],
  ["listening on 127.0.0.1", listeners("127.0.0.1"), "0.0.0.0", true],
  ["listening on 127.0.0.1", listeners("127.0.0.1"), "localhost", true],
  ["listening on 127.0.0.1", listeners("127.0.0.1"), "127.0.0.2", false],
  ["listening on 127.0.0.1", listeners("127.0.0.1"), "::1", false],
  ["listening on 127.0.0.1", listeners("127.0.0.1"), "::", false],
  ["listening on ::1", listeners("::1"), "::", true],
  ["listening on ::1", listeners("::1"), "app.localhost", true],
  ["listening on ::1", listeners("::1"), "127.0.0.1", false],
  ["listening elsewhere", listeners("192.0.2.10"), "127.0.0.1", false],
  ["steering loopback", bpf("127.0.0.0/8", "::1/128"), "127.0.0.5", true],
  ["steering loopback", bpf("127.0.0.0/8", "::1/128"), "::", true],
  ["steering 127.0.0.1", bpf("127.0.0.1/32"), "::ffff:127.0.0.1", true],
  ["steering 127.0.0.1", bpf("127.0.0.1/32"), "localhost", true],
  ["steering 127.0.0.1", bpf("127.0.0.1/32"), "127.0.0.2", false],
  ["steering 127.0.0.1", bpf("127.0.0.1/32"), "::1", false],
  ["steering 10.0.0.0/8", bpf("10.0.0.0/8"), "127.0.0.1", false],
  ["steering 10.0.0.0/8", bpf("10.0.0.0/8"), "localhost", false],
];

Deno.test("reachesProxy() follows ListenAddress and SteerPrefixes", async (t) => {
  for (const [label, settings, host, expected] of CASES) {
    await t.step(`${label}: ${host}`, () => {
      assert.equal(reachesProxy(host, settings), expected);
    });
  }
});
