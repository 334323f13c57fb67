/**
 * Child process for the embedded-object test. It loads every module first,
 * prints "ready", and waits for a line on standard input. The test deletes
 * this copy of the source tree in between, so loading the BPF program
 * afterwards proves that it reads no source file at run time.
 *
 * @module
 */
import { net } from "../../ffi/net.ts";
import { BpfFrontend } from "../../proxy/bpf_frontend.ts";
import { parsePrefix } from "../../proxy/prefix.ts";
import { detachSteering } from "../../ebpf/pinned_state.ts";

const [pinRoot, portText] = Deno.args;
const port = Number(portText);
// deno-lint-ignore no-console
console.log("ready");
const reader = Deno.stdin.readable.getReader();
await reader.read();
reader.releaseLock();

const frontend = BpfFrontend.open({
  prefixes: [parsePrefix("127.0.0.1/32")],
  onConn: (fd) => net().close(fd),
  pinRoot: pinRoot!,
});
await frontend.apply([{ first: port, last: port }]);
const conn = await Deno.connect({ hostname: "127.0.0.1", port });
conn.close();
await frontend.close();
detachSteering(pinRoot!);
// deno-lint-ignore no-console
console.log("steered");
