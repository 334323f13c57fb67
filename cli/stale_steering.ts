import { getLogger } from "@logtape/logtape";
import type { Config } from "../proxy/config.ts";
import { formatRange, mergeRanges } from "../proxy/ports.ts";
import { counted, firstOf } from "../proxy/plural.ts";
import { DEFAULT_PIN_ROOT } from "../ebpf/layout.ts";
import { pathExists, readLink } from "../ffi/libc.ts";

const log = getLogger(["anyport"]);

/** Steered ports named in the warning before the rest are counted. */
const RANGES_SHOWN = 5;

/**
 * Warns when a BPF-mode run left its steering attached in this network
 * namespace, as it does on purpose for a restart to take over. Listeners on
 * the steered ports then never see a connection: the kernel hands each to
 * that run's socket, or refuses it when no socket is in the sockmap.
 */
export async function warnOfPinnedSteering(config: Config): Promise<void> {
  // Through libc: Deno reads /proc/self only with --allow-all, which
  // listeners mode does not need.
  const namespace = /^net:\[(\d+)\]$/.exec(
    readLink("/proc/self/ns/net") ?? "",
  )?.[1];
  if (namespace === undefined) return;
  const path = `${DEFAULT_PIN_ROOT}/${namespace}`;
  if (!pathExists(`${path}/link`)) return;

  const pinned = await readPinnedPorts(path);
  if (pinned === undefined) {
    log.warning(
      'BPF steering of an earlier BPF-mode run is still attached in this network namespace ({path}): connections to its steered ports go to that run\'s socket, or are refused when it has none, and never reach these listeners. Run "anyport bpf detach" unless a BPF-mode proxy should serve them',
      { path },
    );
    return;
  }

  const fate = pinned.socket
    ? "go to that run's socket"
    : "are refused (no proxy socket is in its sockmap)";
  const configuredSteered = config.apps.flatMap((app) => app.ports).flatMap(
    (range) => {
      const ports = [];
      for (let port = range.first; port <= range.last; port++) {
        if (pinned.ports.has(port)) ports.push({ first: port, last: port });
      }
      return ports;
    },
  );
  if (configuredSteered.length === 0) {
    log.warning(
      'BPF steering of an earlier BPF-mode run is still attached in this network namespace ({path}) on {counted}, none of them in this config: connections to them {fate}. Run "anyport bpf detach" unless a BPF-mode proxy should serve them',
      { path, counted: counted(pinned.ports.size, "port"), fate },
    );
    return;
  }

  const ranges = mergeRanges(configuredSteered).map(formatRange);
  const listed = firstOf(ranges, RANGES_SHOWN);
  log.warning(
    'BPF steering of an earlier BPF-mode run is still attached in this network namespace ({path}) and takes {counted} of this config ({ports}): connections to them {fate} instead of reaching these listeners. Run "anyport bpf detach" unless a BPF-mode proxy should serve them',
    {
      path,
      counted: counted(configuredSteered.length, "port"),
      ports: listed,
      fate,
    },
  );
}

/**
 * Reads the steered ports and whether a socket is in the sockmap, or returns
 * `undefined` when the pins cannot be read, for example without root.
 */
async function readPinnedPorts(
  path: string,
): Promise<{ ports: Set<number>; socket: boolean } | undefined> {
  try {
    // Imported here, like BPF mode, so that listeners mode loads libbpf only
    // when pins are present.
    const { openPinnedState } = await import("../ebpf/pinned_state.ts");
    using state = openPinnedState(path);
    if (state === undefined) return undefined;
    return {
      ports: state.maps.readPorts(),
      socket: state.maps.socketCookie() !== undefined,
    };
  } catch {
    return undefined;
  }
}
