/**
 * Error of `PinnedState.locked` when another process kept the lock on the
 * BPF state: a passing condition, so a reload that failed on it is tried
 * again. It has a module of its own, which loads no BPF code, so that
 * listeners mode can test for it.
 */
export class StateLockBusy extends Error {
  constructor(message: string) {
    super(message);
    this.name = "StateLockBusy";
  }
}
