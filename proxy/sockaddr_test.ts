import assert from "node:assert/strict";
import { decodeSockAddr, encodeSockAddr } from "./sockaddr.ts";
import { parseAddress } from "./prefix.ts";

Deno.test("encodeSockAddr() and decodeSockAddr() round-trip IPv4", () => {
  const encoded = encodeSockAddr(parseAddress("192.0.2.7")!, 8080);
  assert.equal(encoded.length, 16);
  const decoded = decodeSockAddr(encoded);
  assert.equal(decoded?.port, 8080);
  assert.equal(decoded?.label, "192.0.2.7:8080");
});

Deno.test("encodeSockAddr() and decodeSockAddr() round-trip IPv6", () => {
  const encoded = encodeSockAddr(parseAddress("2001:db8::1")!, 443);
  assert.equal(encoded.length, 28);
  assert.equal(decodeSockAddr(encoded)?.label, "[2001:db8::1]:443");
});

Deno.test("SocketAddress shows an IPv4-mapped peer as IPv4", () => {
  const encoded = encodeSockAddr(parseAddress("::ffff:127.0.0.1")!, 5000);
  const decoded = decodeSockAddr(encoded);
  assert.equal(decoded?.label, "127.0.0.1:5000");
  assert.deepEqual(decoded?.plainAddress, [127, 0, 0, 1]);
});

Deno.test("decodeSockAddr() returns undefined for other families", () => {
  assert.equal(decodeSockAddr(new Uint8Array(16)), undefined);
});
