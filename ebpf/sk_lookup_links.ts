/**
 * Finds sk_lookup programs attached to a network namespace by others than
 * anyport's pinned link.
 *
 * @module
 */

import { linkFdById, nextLinkId, objInfo } from "../ffi/bpf_fd.ts";
import { closeFd, ENOENT } from "../ffi/libc.ts";
import { LibbpfError } from "../ffi/libbpf.ts";
import { HOST_LITTLE_ENDIAN } from "./layout.ts";

const BPF_LINK_TYPE_NETNS = 5;
const BPF_SK_LOOKUP = 36;
const EPERM = 1;

/** A link that attaches an sk_lookup program to a network namespace. */
export interface SkLookupLink {
  id: number;
  programId: number;
}

/**
 * Lists the sk_lookup links of network namespace `netnsInode` other than
 * `ownLinkId`. The kernel runs every sk_lookup program of a namespace, in
 * the order they were attached, and each can pick a socket or refuse
 * the connection, so such a link can take or refuse steered connections. It is
 * what a second anyport leaves when it pins into another bpffs, or after
 * its pins were deleted, or another tool's program.
 *
 * @returns `undefined` when this process may not list links (listing needs
 * `CAP_SYS_ADMIN`)
 */
export function otherSkLookupLinks(
  netnsInode: number,
  ownLinkId: number,
): SkLookupLink[] | undefined {
  const links: SkLookupLink[] = [];
  try {
    for (let id = nextLinkId(0); id !== undefined; id = nextLinkId(id)) {
      if (id === ownLinkId) continue;
      const link = readSkLookupLink(id, netnsInode);
      if (link !== undefined) links.push(link);
    }
  } catch (error) {
    if (error instanceof LibbpfError && error.errno === EPERM) {
      return undefined;
    }
    throw error;
  }
  return links;
}

/** Returns link `id` when it attaches sk_lookup to `netnsInode`. */
function readSkLookupLink(
  id: number,
  netnsInode: number,
): SkLookupLink | undefined {
  let fd: number;
  try {
    fd = linkFdById(id);
  } catch (error) {
    // Detached and freed since it was listed.
    if (error instanceof LibbpfError && error.errno === ENOENT) {
      return undefined;
    }
    throw error;
  }
  try {
    const info = readNetnsLinkInfo(fd, `read information of BPF link ${id}`);
    if (
      info.type !== BPF_LINK_TYPE_NETNS || info.attachType !== BPF_SK_LOOKUP ||
      info.netnsInode !== netnsInode
    ) {
      return undefined;
    }
    return { id, programId: info.programId };
  } finally {
    closeFd(fd);
  }
}

/** What the kernel reports of a BPF link, with the fields of a netns link. */
export interface NetnsLinkInfo {
  /** `enum bpf_link_type`, 5 for a network namespace link. */
  type: number;
  /** BPF link id, as `bpftool link list` shows it. */
  id: number;
  /** Id of the attached program. */
  programId: number;
  /** Inode of the network namespace, 0 once that namespace is gone. */
  netnsInode: number;
  /** `enum bpf_attach_type`, 36 for sk_lookup. */
  attachType: number;
}

/**
 * Reads `struct bpf_link_info` of link `fd`; the last two fields mean
 * something only for a network namespace link.
 */
export function readNetnsLinkInfo(
  fd: number,
  operation: string,
): NetnsLinkInfo {
  // struct bpf_link_info { u32 type, id, prog_id; u32 pad;
  //   union { struct { u32 netns_ino, attach_type; } netns; ... }; }
  const info = new Uint8Array(24);
  objInfo(fd, info, operation);
  const view = new DataView(info.buffer);
  return {
    type: view.getUint32(0, HOST_LITTLE_ENDIAN),
    id: view.getUint32(4, HOST_LITTLE_ENDIAN),
    programId: view.getUint32(8, HOST_LITTLE_ENDIAN),
    netnsInode: view.getUint32(16, HOST_LITTLE_ENDIAN),
    attachType: view.getUint32(20, HOST_LITTLE_ENDIAN),
  };
}
