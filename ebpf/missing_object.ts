/**
 * Replaces the module loader's error for a BPF object that was never built
 * with one that names the build step.
 *
 * @module
 */

/**
 * Returns `error` with a message naming `ebpf/build.sh` when it is the
 * loader's "Module not found" for `steer.bpf.o`, and `error` unchanged
 * otherwise.
 */
export function explainMissingObject(error: unknown): unknown {
  const message = error instanceof Error ? error.message : String(error);
  if (!/Module not found .*steer\.bpf\.o/.test(message)) return error;
  return new Error(
    "The BPF program ebpf/steer.bpf.o is not built: run ebpf/build.sh " +
      "(needs clang, llvm and libbpf-dev), or run in listeners mode",
    { cause: error },
  );
}
