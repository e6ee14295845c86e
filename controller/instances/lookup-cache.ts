/**
 * Flavors and images by the name a boot asks for, kept for a moment: a boot
 * storm asks for the same few names a thousand times a second, and each ask
 * was a query. Concurrent asks share one query. A failed lookup is not kept,
 * and a change (a deleted image, new flavor keys) is seen within `ttlMs`.
 */
export class LookupCache<T> {
  readonly #ttlMs: number;
  readonly #maxEntries: number;
  readonly #now: () => number;
  readonly #entries = new Map<string, { readonly value: Promise<T>; readonly until: number }>();

  readonly #keep: (value: T) => boolean;

  constructor(ttlMs: number, keep: (value: T) => boolean = () => true, maxEntries = 1024, now: () => number = Date.now) {
    this.#ttlMs = ttlMs;
    this.#keep = keep;
    this.#maxEntries = maxEntries;
    this.#now = now;
  }

  get(key: string, load: (key: string) => Promise<T>): Promise<T> {
    const now = this.#now();
    const hit = this.#entries.get(key);
    if (hit && hit.until > now) return hit.value;
    if (this.#entries.size >= this.#maxEntries) this.#entries.clear();
    const value = load(key);
    const entry = { value, until: now + this.#ttlMs };
    this.#entries.set(key, entry);
    const forget = (): void => {
      if (this.#entries.get(key) === entry) this.#entries.delete(key);
    };
    value.then((v) => {
      if (!this.#keep(v)) forget();
    }, forget);
    return value;
  }
}
