/**
 * Checks that the BPF steering mode can work here, so that a missing
 * requirement fails at start with an error that explains how to provide it.
 *
 * @module
 */

import { check, libbpf } from "../ffi/libbpf.ts";

/** `BPF_PROG_TYPE_SK_LOOKUP` from `enum bpf_prog_type`. */
const BPF_PROG_TYPE_SK_LOOKUP = 30;

/** Capability numbers from `linux/capability.h`. */
const CAP_NET_ADMIN = 12n;
const CAP_SYS_ADMIN = 21n;
const CAP_BPF = 39n;

/**
 * Checks, in order: Deno allows reading /proc/self, libbpf is installed,
 * the process may load and attach BPF programs, `pinRoot` is on a bpffs, and
 * the kernel has sk_lookup.
 *
 * @param action what the caller does with the pins, for the messages
 * @throws {Error} naming the first missing requirement and its fix
 */
export function checkBpfRequirements(
  pinRoot: string,
  action: PinAction = "pin",
): void {
  checkProcAccess();
  libbpf();
  checkCapabilities(effectiveCapabilities());
  checkBpfFs(pinRoot, Deno.readTextFileSync("/proc/self/mountinfo"), action);
  checkSkLookup();
}

/**
 * Checks that Deno lets this process read /proc/self, which it allows only
 * with `--allow-all`.
 *
 * @throws {Error} when the permission is missing
 */
function checkProcAccess(): void {
  try {
    Deno.statSync("/proc/self/ns/net");
  } catch (error) {
    if (!(error instanceof Deno.errors.NotCapable)) throw error;
    throw new Error(
      "Cannot use BPF mode without --allow-all: Deno allows reading " +
        "/proc/self only with it, and BPF mode needs /proc/self for the " +
        "network namespace, capabilities and mounts",
      { cause: error },
    );
  }
}

/**
 * Checks for CAP_BPF and CAP_NET_ADMIN, or CAP_SYS_ADMIN, which covers
 * both, in the effective set `capabilities`.
 *
 * @throws {Error} when one is missing
 */
export function checkCapabilities(capabilities: bigint): void {
  const has = (cap: bigint) => ((capabilities >> cap) & 1n) === 1n;
  const missing = [];
  if (!has(CAP_BPF) && !has(CAP_SYS_ADMIN)) missing.push("CAP_BPF");
  if (!has(CAP_NET_ADMIN) && !has(CAP_SYS_ADMIN)) missing.push("CAP_NET_ADMIN");
  if (missing.length === 0) return;
  throw new Error(
    `Cannot use BPF steering: the process lacks ${
      missing.join(" and ")
    }; run as root or grant CAP_BPF and CAP_NET_ADMIN`,
  );
}

/** Use of the pins that a caller intends, named in the messages. */
export type PinAction = "pin" | "read" | "remove";

/**
 * Checks that `path`, or the directory that will hold it, is on a bpffs,
 * the only file system that can hold BPF pins.
 *
 * @param mountinfo contents of `/proc/self/mountinfo`
 * @param action what the caller does with the pins, for the message
 * @throws {Error} when the file system at `path` is not a bpffs
 */
export function checkBpfFs(
  path: string,
  mountinfo: string,
  action: PinAction = "pin",
): void {
  const real = realPathOfAncestor(path);
  const mount = findMount(real, mountinfo);
  if (mount?.type === "bpf") return;
  throw new Error(
    `Cannot ${action} BPF state under "${path}": no bpffs is mounted there ` +
      `(found ${mount?.type ?? "nothing"} at "${mount?.point ?? real}"); ` +
      `mount one with "mount -t bpf bpf /sys/fs/bpf"`,
  );
}

/**
 * Checks that the kernel can load sk_lookup programs (Linux 5.9 and later).
 *
 * @throws {Error} when the kernel lacks them
 */
export function checkSkLookup(): void {
  const supported = check(
    libbpf().libbpf_probe_bpf_prog_type(BPF_PROG_TYPE_SK_LOOKUP, null),
    "probe for sk_lookup programs",
  );
  if (supported === 1) return;
  // NOTE: no test covers this branch: it needs a kernel older than 5.9.
  throw new Error(
    "Cannot load the BPF steering program: the kernel lacks sk_lookup " +
      "programs; use Linux 5.9 or later",
  );
}

/** Reads the effective capability set (`CapEff`) of this process. */
function effectiveCapabilities(): bigint {
  const status = Deno.readTextFileSync("/proc/self/status");
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return hex === undefined ? 0n : BigInt(`0x${hex}`);
}

interface Mount {
  point: string;
  type: string;
}

/** Finds the mount that contains `path`: the longest matching mount point. */
function findMount(path: string, mountinfo: string): Mount | undefined {
  let best: Mount | undefined;
  for (const line of mountinfo.split("\n")) {
    // "36 35 98:0 /root /mnt rw,noatime master:1 - ext3 /dev/root rw"
    const fields = line.split(" ");
    const separator = fields.indexOf("-");
    const point = unescapeMountPath(fields[4] ?? "");
    const type = fields[separator + 1];
    if (separator < 0 || type === undefined || !contains(point, path)) {
      continue;
    }
    if (best === undefined || point.length >= best.point.length) {
      best = { point, type };
    }
  }
  return best;
}

function contains(point: string, path: string): boolean {
  return point === "/" || path === point || path.startsWith(`${point}/`);
}

/** Decodes the octal escapes (`\040` for a space) of mountinfo paths. */
function unescapeMountPath(text: string): string {
  return text.replace(
    /\\([0-7]{3})/g,
    (_, octal: string) => String.fromCharCode(parseInt(octal, 8)),
  );
}

/** Resolves symbolic links in the longest part of `path` that exists. */
function realPathOfAncestor(path: string): string {
  const parts = path.split("/");
  for (let end = parts.length; end > 0; end--) {
    const ancestor = parts.slice(0, end).join("/") || "/";
    try {
      const real = Deno.realPathSync(ancestor);
      const rest = parts.slice(end).join("/");
      return rest === "" ? real : `${real.replace(/\/$/, "")}/${rest}`;
    } catch {
      continue;
    }
  }
  return path;
}
