/**
 * Bindings to libbpf 1.x (`libbpf.so.1`), limited to the functions that the
 * BPF steering mode calls.
 *
 * The library is opened on first use, so the default mode runs on hosts
 * without libbpf. No binding is `nonblocking`: every call is a short system
 * call, and pointer-returning calls report failures through `errno`, which is
 * per thread and must be read on the thread that made the call.
 *
 * @module
 */

import { getLogger } from "@logtape/logtape";
import { errno, libc } from "./libc.ts";

const LIBRARY = "libbpf.so.1";

const SYMBOLS = {
  bpf_object__open_mem: {
    parameters: ["buffer", "usize", "pointer"],
    result: "pointer",
  },
  bpf_object__load: { parameters: ["pointer"], result: "i32" },
  bpf_object__close: { parameters: ["pointer"], result: "void" },
  bpf_object__find_program_by_name: {
    parameters: ["pointer", "buffer"],
    result: "pointer",
  },
  bpf_object__find_map_by_name: {
    parameters: ["pointer", "buffer"],
    result: "pointer",
  },
  bpf_program__fd: { parameters: ["pointer"], result: "i32" },
  bpf_program__attach_netns: {
    parameters: ["pointer", "i32"],
    result: "pointer",
  },
  bpf_map__fd: { parameters: ["pointer"], result: "i32" },
  bpf_map__reuse_fd: { parameters: ["pointer", "i32"], result: "i32" },
  bpf_link__fd: { parameters: ["pointer"], result: "i32" },
  bpf_link__pin: { parameters: ["pointer", "buffer"], result: "i32" },
  bpf_link__destroy: { parameters: ["pointer"], result: "i32" },
  bpf_obj_pin: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_obj_get: { parameters: ["buffer"], result: "i32" },
  bpf_obj_get_info_by_fd: {
    parameters: ["i32", "buffer", "buffer"],
    result: "i32",
  },
  bpf_map_update_elem: {
    parameters: ["i32", "buffer", "buffer", "u64"],
    result: "i32",
  },
  bpf_map_lookup_elem: {
    parameters: ["i32", "buffer", "buffer"],
    result: "i32",
  },
  bpf_map_delete_elem: { parameters: ["i32", "buffer"], result: "i32" },
  bpf_map_get_next_key: {
    parameters: ["i32", "buffer", "buffer"],
    result: "i32",
  },
  bpf_map_update_batch: {
    parameters: ["i32", "buffer", "buffer", "buffer", "pointer"],
    result: "i32",
  },
  bpf_map_delete_batch: {
    parameters: ["i32", "buffer", "buffer", "pointer"],
    result: "i32",
  },
  bpf_link_update: { parameters: ["i32", "i32", "pointer"], result: "i32" },
  bpf_link_detach: { parameters: ["i32"], result: "i32" },
  bpf_link_get_next_id: { parameters: ["u32", "buffer"], result: "i32" },
  bpf_link_get_fd_by_id: { parameters: ["u32"], result: "i32" },
  libbpf_strerror: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  libbpf_probe_bpf_prog_type: {
    parameters: ["i32", "pointer"],
    result: "i32",
  },
  libbpf_num_possible_cpus: { parameters: [], result: "i32" },
  libbpf_set_print: { parameters: ["function"], result: "pointer" },
} as const;

/** Symbols of the opened library. */
export type Libbpf = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** `enum libbpf_print_level` */
const LIBBPF_WARN = 0;
const LIBBPF_INFO = 1;

const PRINT_CALLBACK = {
  parameters: ["i32", "pointer", "pointer"],
  result: "i32",
} as const;

const logger = getLogger(["anyport", "bpf"]);

let library: Deno.DynamicLibrary<typeof SYMBOLS> | undefined;
let printCallback: Deno.UnsafeCallback<typeof PRINT_CALLBACK> | undefined;

/**
 * Returns the libbpf symbols, opening the library on first use. libbpf's own
 * messages go to the `["anyport", "bpf"]` logger: warnings at warning level,
 * information at debug level.
 *
 * @throws {Error} when `libbpf.so.1` cannot be opened, naming the package to
 * install
 */
export function libbpf(): Libbpf {
  if (library !== undefined) return library.symbols;
  try {
    library = Deno.dlopen(LIBRARY, SYMBOLS);
  } catch (error) {
    throw new Error(
      `Cannot open ${LIBRARY}: ${errorMessage(error)}; ` +
        `install libbpf 1.x, such as "apt-get install libbpf1"`,
      { cause: error },
    );
  }
  printCallback = new Deno.UnsafeCallback(PRINT_CALLBACK, logLibbpfMessage);
  library.symbols.libbpf_set_print(printCallback.pointer);
  return library.symbols;
}

/** Failure of a libbpf call, with the positive `errno` value. */
export class LibbpfError extends Error {
  /** The `errno` value (or libbpf's own code above 4000). */
  readonly errno: number;

  constructor(operation: string, code: number) {
    super(`${operation}: ${libbpfStrerror(code)}`);
    this.name = "LibbpfError";
    this.errno = code;
  }
}

/**
 * Returns `result` when it is not negative. libbpf 1.x returns `-errno`
 * from functions that return an `int`.
 *
 * @throws {LibbpfError} naming `operation` when `result` is negative
 */
export function check(result: number, operation: string): number {
  if (result < 0) throw new LibbpfError(operation, -result);
  return result;
}

/**
 * Returns `pointer` when it is not null. libbpf 1.x returns null and sets
 * `errno` from functions that return a pointer.
 *
 * @throws {LibbpfError} naming `operation` when `pointer` is null
 */
export function checkPointer(
  pointer: Deno.PointerValue,
  operation: string,
): Deno.PointerObject {
  if (pointer === null) throw new LibbpfError(operation, errno());
  return pointer;
}

/** Returns libbpf's message for an error code, such as "Permission denied". */
function libbpfStrerror(code: number): string {
  const buffer = new Uint8Array(256);
  libbpf().libbpf_strerror(code, buffer, BigInt(buffer.length));
  const end = buffer.indexOf(0);
  return new TextDecoder().decode(buffer.subarray(0, end < 0 ? 0 : end));
}

function logLibbpfMessage(
  level: number,
  format: Deno.PointerValue,
  args: Deno.PointerValue,
): number {
  if (level > LIBBPF_INFO) return 0;
  // `args` is the caller's va_list, which can be read only once: here.
  const buffer = new Uint8Array(1024);
  const length = libc().vsnprintf(
    buffer,
    BigInt(buffer.length),
    format,
    args,
  );
  const end = Math.min(Math.max(length, 0), buffer.length - 1);
  // libbpf starts most lines with its own "libbpf: ", which the log adds.
  const text = new TextDecoder().decode(buffer.subarray(0, end)).trimEnd()
    .replace(/^libbpf: /, "");
  if (level === LIBBPF_WARN) logger.warn("libbpf: {text}", { text });
  else logger.debug("libbpf: {text}", { text });
  return 0;
}

function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
