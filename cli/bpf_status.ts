import { formatPrefix } from "../proxy/prefix.ts";
import { formatRange, mergeRanges } from "../proxy/ports.ts";
import {
  netnsInode,
  openPinnedState,
  statePath,
} from "../ebpf/pinned_state.ts";
import { checkBpfRequirements } from "../ebpf/requirements.ts";
import {
  otherSkLookupLinks,
  type SkLookupLink,
} from "../ebpf/sk_lookup_links.ts";

/** BPF steering state of one network namespace, as `bpf status` shows it. */
export interface BpfStatus {
  attached: boolean;
  netnsInode: number;
  /** Directory of the pins. */
  path: string;
  link?: { id: number; programId: number; netnsInode: number };
  /** Whether a proxy socket is in the sockmap, with its `SO_COOKIE`. */
  socket?: { present: boolean; cookie?: number };
  /**
   * Whether a replaced process's socket is in the standby sockmap, which
   * takes the steered connections while the sockmap is empty.
   */
  standby?: { present: boolean; cookie?: number };
  /** Steered ports as merged ranges, such as `["80", "20000-29999"]`. */
  ports?: string[];
  portCount?: number;
  prefixes?: string[];
  /**
   * Other sk_lookup links of this network namespace, which can take or
   * refuse steered connections; absent when listing them is not allowed.
   */
  otherLinks?: SkLookupLink[];
  /** Counter totals over all CPUs. */
  counters?: {
    lookups: number;
    steered: number;
    noSocket: number;
    assignErrors: number;
  };
}

/**
 * Reads the pinned steering state of this network namespace under `pinRoot`.
 *
 * @throws {Error} when BPF cannot work here or the pins cannot be read
 */
export function readBpfStatus(pinRoot: string): BpfStatus {
  checkBpfRequirements(pinRoot, "read");
  const path = statePath(pinRoot);
  const status: BpfStatus = { attached: false, netnsInode: netnsInode(), path };
  using state = openPinnedState(path);
  if (state === undefined) {
    const others = otherSkLookupLinks(status.netnsInode, 0);
    if (others !== undefined) status.otherLinks = others;
    return status;
  }

  const ports = [...state.maps.readPorts()];
  const cookie = state.maps.socketCookie();
  const standby = state.maps.standbyCookie();
  const counters = state.maps.readCounters();
  status.attached = true;
  status.link = state.linkInfo();
  const others = otherSkLookupLinks(status.netnsInode, status.link.id);
  if (others !== undefined) status.otherLinks = others;
  status.socket = cookie === undefined
    ? { present: false }
    : { present: true, cookie: Number(cookie) };
  status.standby = standby === undefined
    ? { present: false }
    : { present: true, cookie: Number(standby) };
  status.ports = mergeRanges(ports.map((p) => ({ first: p, last: p })))
    .map(formatRange);
  status.portCount = ports.length;
  status.prefixes = state.maps.readPrefixes().map(formatPrefix);
  status.counters = {
    lookups: Number(counters.lookups),
    steered: Number(counters.steered),
    noSocket: Number(counters.noSocket),
    assignErrors: Number(counters.assignErrors),
  };
  return status;
}

/** Formats a status for people, one fact per line. */
export function formatBpfStatus(status: BpfStatus): string {
  const others = status.otherLinks?.map((link) =>
    `link ${link.id} (program ${link.programId})`
  ).join(", ");
  if (!status.attached) {
    const text = `No BPF steering in network namespace ${status.netnsInode}: ` +
      `nothing is pinned in ${status.path}`;
    return others
      ? `${text}\n  warning:   sk_lookup links are attached without pins ` +
        `there: ${others}; an anyport whose pins were removed or that pins ` +
        `into another bpffs, or another tool (bpftool link show)`
      : text;
  }
  const { link, socket, standby, counters } = status;
  const lines = [
    `BPF steering in network namespace ${status.netnsInode}`,
    `  pins:      ${status.path}`,
    `  link:      ${link?.id} (program ${link?.programId})`,
    `  socket:    ${
      socket?.present
        ? `present (cookie ${socket.cookie})`
        : standby?.present
        ? "missing: the standby socket takes steered connections"
        : "missing: steered connections are refused"
    }`,
    `  standby:   ${
      standby?.present ? `present (cookie ${standby.cookie})` : "none"
    }`,
    `  ports:     ${status.portCount} (${status.ports?.join(", ") || "none"})`,
    `  prefixes:  ${status.prefixes?.join(", ") || "none"}`,
    `  counters:  lookups ${counters?.lookups}, steered ${counters?.steered}, ` +
    `no socket ${counters?.noSocket}, assign errors ${counters?.assignErrors}`,
  ];
  if (link !== undefined && link.netnsInode !== status.netnsInode) {
    lines.push("  warning:   the link's network namespace is gone");
  }
  if (others) {
    lines.push(
      `  warning:   other sk_lookup links in this namespace: ${others}; ` +
        "they can take or refuse steered connections (bpftool link show)",
    );
  }
  return lines.join("\n");
}
