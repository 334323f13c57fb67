import { getLogger } from "@logtape/logtape";

const log = getLogger(["anyport"]);

/** First wait before a reload that ran out of resources is tried again, in ms. */
const RETRY_FIRST_MS = 1_000;
/** Maximum wait between those tries, in ms. */
const RETRY_MAX_MS = 30_000;

/**
 * Tries a reload again after it failed for a reason that passes, such as a
 * lack of descriptors or the BPF state locked by a stopped process, with a
 * doubling wait. Without it, the new config would wait for the next edit or
 * SIGHUP even once the cause is gone.
 */
export class ReloadRetry {
  readonly #reload: () => void;
  readonly #first: number;
  #delay: number;
  #timer: ReturnType<typeof setTimeout> | undefined;

  /** @param firstMs the first wait, which tests shorten */
  constructor(reload: () => void, firstMs = RETRY_FIRST_MS) {
    this.#reload = reload;
    this.#first = firstMs;
    this.#delay = firstMs;
  }

  /**
   * Schedules the next try and logs when it comes.
   *
   * @returns the wait in ms
   */
  schedule(): number {
    this.cancel();
    const delay = this.#delay;
    this.#delay = Math.min(this.#delay * 2, RETRY_MAX_MS);
    log.warning("Reload will be tried again in {delay} ms", { delay });
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#reload();
    }, delay);
    return delay;
  }

  /** Forgets the waits after a reload that did not run out of resources. */
  reset(): void {
    this.#delay = this.#first;
  }

  /** Drops a scheduled try, because a new reload request replaces it. */
  cancel(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }
}
