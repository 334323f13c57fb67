// Attaches the steering program in this process's network namespace, steers
// one port and exits, leaving the pins behind.
//
// Usage: attach_and_exit.ts PIN_ROOT

import { attachSteering } from "../pinned_state.ts";

using state = attachSteering(Deno.args[0] ?? "");
state.maps.addPorts([9000]);
