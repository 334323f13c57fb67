/**
 * The address of each target name that connected last, so that later
 * connections try it first.
 *
 * A name can resolve to several addresses, and the resolver keeps their
 * order. When the first one drops SYNs, every connection would wait for its
 * share of `ConnectTimeoutMs` before trying the next one.
 */
export class AddressPreference {
  readonly #preferred = new Map<string, string>();
  readonly #limit: number;

  /** @param limit names to keep before every record is dropped */
  constructor(limit = 4096) {
    this.#limit = limit;
  }

  /**
   * Returns `addresses` with the one that last connected for `key` first,
   * or `addresses` itself when that one is first already or not listed.
   */
  order(key: string, addresses: readonly string[]): readonly string[] {
    const preferred = this.#preferred.get(key);
    if (preferred === undefined || addresses[0] === preferred) {
      return addresses;
    }
    if (!addresses.includes(preferred)) {
      this.#preferred.delete(key);
      return addresses;
    }
    return [preferred, ...addresses.filter((a) => a !== preferred)];
  }

  /** Records that `address` connected for `key`. */
  remember(key: string, address: string): void {
    if (this.#preferred.get(key) === address) return;
    if (this.#preferred.size >= this.#limit) this.#preferred.clear();
    this.#preferred.set(key, address);
  }
}
