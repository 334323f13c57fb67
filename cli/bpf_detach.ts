import { detachSteering, statePath } from "../ebpf/pinned_state.ts";
import { checkBpfRequirements } from "../ebpf/requirements.ts";

/** Outcome of `bpf detach`. */
export interface BpfDetachResult {
  /** Whether anything was pinned and has been removed. */
  detached: boolean;
  /** Directory of the pins. */
  path: string;
}

/**
 * Detaches the steering program from this network namespace and removes the
 * pins under `pinRoot`. A proxy still running stops receiving steered
 * connections.
 *
 * @throws {Error} when BPF cannot work here or a pin cannot be removed
 */
export function detachBpf(pinRoot: string): BpfDetachResult {
  checkBpfRequirements(pinRoot, "remove");
  const path = statePath(pinRoot);
  return { detached: detachSteering(pinRoot), path };
}

/** Formats the outcome for people. */
export function formatBpfDetach(result: BpfDetachResult): string {
  return result.detached
    ? `Detached BPF steering and removed ${result.path}`
    : `Nothing to detach: nothing is pinned in ${result.path}`;
}
