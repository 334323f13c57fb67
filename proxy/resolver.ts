import { lookup } from "node:dns/promises";
import { parseAddress } from "./prefix.ts";

/** Time a lookup result, found or not found, is reused, in ms. */
export const RESOLVE_TTL_MS = 10_000;

interface Entry {
  /** Addresses found, or the lookup error; unset until the first lookup ends. */
  result: string[] | Error | undefined;
  expires: number;
  /** Lookup in flight, shared by every caller that needs it. */
  pending: Promise<string[]> | undefined;
}

/**
 * Cache of target host name lookups, made with the system resolver
 * (getaddrinfo, so `/etc/hosts` applies).
 *
 * A fresh result is returned at once. A stale one is returned too while a
 * new lookup runs in the background, so no connection waits for DNS once a
 * name was looked up. Failed lookups are cached the same way, so a name
 * that does not resolve costs one lookup per period, not one per connection.
 */
export class Resolver {
  readonly ttlMs: number;
  readonly #entries = new Map<string, Entry>();

  constructor(ttlMs = RESOLVE_TTL_MS) {
    this.ttlMs = ttlMs;
  }

  /**
   * Returns the addresses of `hostname`; a literal address is returned as it is.
   *
   * @throws {Error} when the name does not resolve, from cache or anew
   */
  async resolve(hostname: string): Promise<string[]> {
    if (parseAddress(hostname) !== undefined) return [hostname];
    const entry = this.#entries.get(hostname);
    if (entry === undefined) return await this.#lookup(hostname);
    // The first lookup of a name is still running: wait for it too.
    if (entry.result === undefined) return await this.#lookup(hostname);
    if (Date.now() >= entry.expires && entry.pending === undefined) {
      this.#lookup(hostname).catch(() => {});
    }
    if (entry.result instanceof Error) throw entry.result;
    return entry.result;
  }

  /** Forgets names that are no longer used, after a reload. */
  retain(hostnames: Set<string>): void {
    for (const name of this.#entries.keys()) {
      if (!hostnames.has(name)) this.#entries.delete(name);
    }
  }

  #lookup(hostname: string): Promise<string[]> {
    const existing = this.#entries.get(hostname);
    // Callers that come while a lookup runs get its result, or the error
    // that names the host.
    if (existing?.pending !== undefined) return existing.pending;
    const entry: Entry = existing ?? {
      result: undefined,
      expires: 0,
      pending: undefined,
    };
    this.#entries.set(hostname, entry);
    // Without "verbatim", Deno's lookup returned the addresses of a name in
    // another order than getaddrinfo(3) (127.0.0.7, .9, .8 as .8, .9, .7), so
    // a backup address listed second in /etc/hosts was tried first.
    entry.pending = lookup(hostname, { all: true, order: "verbatim" }).then(
      (found) => {
        // /etc/hosts may list an address twice, and each try of it would
        // take its own share of the connect timeout.
        const addresses = [...new Set(found.map((a) => a.address))];
        entry.result = addresses;
        entry.expires = Date.now() + this.ttlMs;
        entry.pending = undefined;
        return addresses;
      },
      (error: unknown) => {
        const code = (error as { code?: string }).code ?? "";
        entry.result = new Error(
          `cannot resolve host name "${hostname}"${
            code === "" ? "" : ` (${code})`
          }`,
          { cause: error },
        );
        entry.expires = Date.now() + this.ttlMs;
        entry.pending = undefined;
        throw entry.result;
      },
    );
    return entry.pending;
  }
}
