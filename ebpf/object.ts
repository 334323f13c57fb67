/**
 * The compiled sk_lookup program, embedded so that `deno compile` carries
 * it. Build it with `ebpf/build.sh` before running or compiling.
 *
 * @module
 */

import object from "./steer.bpf.o" with { type: "bytes" };

/** Bytes of the BPF ELF object built from `ebpf/steer.bpf.c`. */
export const STEER_OBJECT: Uint8Array = object;
