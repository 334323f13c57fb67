// Child process for the restart tests: steers one port to a BpfFrontend and
// replies to every connection with "child <pid>". SIGTERM closes the frontend
// and exits; SIGKILL tests a crash.
//
// Usage: bpf_child.ts PIN_ROOT PORT

import { BpfFrontend } from "../bpf_frontend.ts";
import { parsePrefix } from "../prefix.ts";
import { MSG_NOSIGNAL, net } from "../../ffi/net.ts";

const [pinRoot = "", portText = ""] = Deno.args;
const port = Number(portText);

let frontend: BpfFrontend;
try {
  frontend = BpfFrontend.open({
    prefixes: [parsePrefix("127.0.0.1/32")],
    pinRoot,
    onConn: (fd) => {
      const line = new TextEncoder().encode(`child ${Deno.pid}\n`);
      net().send(fd, line, line.length, MSG_NOSIGNAL);
      net().close(fd);
    },
  });
  await frontend.apply([{ first: port, last: port }]);
} catch (error) {
  // deno-lint-ignore no-console
  console.log(`error: ${(error as Error).message}`);
  Deno.exit(1);
}
Deno.addSignalListener("SIGTERM", async () => {
  await frontend.close();
  Deno.exit(0);
});
// deno-lint-ignore no-console
console.log("ready");
