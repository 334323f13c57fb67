import assert from "node:assert/strict";
import { parseProcNetTcp, readLocalListeners } from "./local_listeners.ts";

const TCP =
  `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 641 1 0 100 0 0 10 0
   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 642 1 0 100 0 0 10 0
   2: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 643 1 0 20 4 30 10 -1
`;

const TCP6 =
  `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 700 1 0 100 0 0 10 0
   1: 0000000000000000FFFF00000100007F:01BB 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 701 1 0 100 0 0 10 0
`;

Deno.test("parseProcNetTcp() reads IPv4 listeners only", () => {
  const listeners = parseProcNetTcp(TCP);

  assert.equal(listeners.length, 2);
  assert.deepEqual([...listeners[0]!.address], [127, 0, 0, 1]);
  assert.equal(listeners[0]!.port, 8080);
  assert.deepEqual([...listeners[1]!.address], [0, 0, 0, 0]);
  assert.equal(listeners[1]!.port, 22);
});

Deno.test("parseProcNetTcp() reads IPv6 listeners", () => {
  const listeners = parseProcNetTcp(TCP6);

  assert.equal(listeners.length, 2);
  // ::1
  assert.deepEqual([...listeners[0]!.address], [...Array(15).fill(0), 1]);
  assert.equal(listeners[0]!.port, 80);
  // ::ffff:127.0.0.1
  assert.deepEqual(
    [...listeners[1]!.address],
    [...Array(10).fill(0), 0xff, 0xff, 127, 0, 0, 1],
  );
  assert.equal(listeners[1]!.port, 443);
});

Deno.test("readLocalListeners() finds a listener of this process", () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;

  const found = readLocalListeners().filter((l) => l.port === port);

  assert.equal(found.length, 1);
  assert.deepEqual([...found[0]!.address], [127, 0, 0, 1]);
});
