/**
 * A per-process read-through cache for lookups that other processes can invalidate (the callers
 * wire it to Postgres NOTIFY). Concurrent misses for one key share one load; entries live at most
 * `ttlMs`, which only bounds staleness if a notification is ever missed; a generation counter
 * keeps a load that raced with an invalidation from storing what it read before it.
 */
export function createReadThroughCache<V>(opts: { ttlMs: number; maxEntries: number; now?: () => number }) {
  const entries = new Map<string, { value: V; expiresAt: number }>();
  const inflight = new Map<string, Promise<V | undefined>>();
  const now = opts.now ?? Date.now;
  let generation = 0;

  function load(key: string, loader: () => Promise<V | undefined>) {
    const seen = generation;
    const promise = loader()
      .then((value) => {
        if (value !== undefined && seen === generation && opts.ttlMs > 0) {
          if (entries.size >= opts.maxEntries) entries.delete(entries.keys().next().value!);
          entries.set(key, { value, expiresAt: now() + opts.ttlMs });
        }
        return value;
      })
      .finally(() => {
        if (inflight.get(key) === promise) inflight.delete(key);
      });
    inflight.set(key, promise);
    return promise;
  }

  return {
    /** The cached value, or the result of `loader` (shared with concurrent callers for the key). */
    async get(key: string, loader: () => Promise<V | undefined>): Promise<V | undefined> {
      const hit = entries.get(key);
      if (hit && hit.expiresAt > now()) return hit.value;
      if (hit) entries.delete(key);
      return inflight.get(key) ?? load(key, loader);
    },
    /** Drops every entry (notifications may have been missed); loads in flight will not be stored. */
    clear(): void {
      generation++;
      inflight.clear();
      entries.clear();
    },
    /** Drops every entry the predicate matches; loads in flight will not be stored. */
    invalidateWhere(matches: (value: V) => boolean): void {
      generation++;
      inflight.clear();
      for (const [key, entry] of entries) if (matches(entry.value)) entries.delete(key);
    },
  };
}
