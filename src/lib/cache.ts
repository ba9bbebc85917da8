import { LRUCache } from 'lru-cache';

/** A loader failed: its error goes to the callers as it is (an abort by the cache is retried instead). */
class LoadFailed extends Error {
  constructor(readonly failure: unknown) {
    super('load failed');
  }
}
/** A load that an invalidation of one of its tags overtook: nothing is stored and the callers load again. */
class Superseded extends Error {}

/** Attempts through the cache before a caller loads on its own (invalidations keep overtaking its loads). */
const ATTEMPTS = 3;
/**
 * Invalidations remembered while loads are in flight. Past this (loads stuck for a long time under
 * heavy churn) every load in flight is treated as overtaken, and the memory starts afresh.
 */
const MAX_REMEMBERED = 100_000;

/**
 * A per-process read-through cache for lookups that other processes can invalidate (the callers
 * wire it to Postgres NOTIFY). Least recently used entries go first when it is full; concurrent
 * misses for one key share one load (lru-cache's `fetch`); entries live at most `ttlMs`, which only
 * bounds staleness if a notification is ever missed.
 *
 * Each value carries tags (`conn:12`, `env:<uuid>`, …), and an invalidation names a tag: an index
 * tag → keys makes it cost the entries it drops, not the size of the cache. A load that was in
 * flight when one of its value's tags was invalidated read the row before the change, so it is not
 * stored; its callers load again.
 */
export function createReadThroughCache<V extends object>(opts: {
  ttlMs: number;
  maxEntries: number;
  tags: (value: V) => readonly string[];
}) {
  type Load = () => Promise<V | undefined>;
  const byTag = new Map<string, Set<string>>();
  // Invalidations (tag → sequence number) that loads now in flight must still check their value against.
  const invalidatedAt = new Map<string, number>();
  const inflightStarts = new Map<object, number>();
  let sequence = 0;
  let floor = 0;

  const cache = new LRUCache<string, V, Load>({
    max: opts.maxEntries,
    ttl: Math.max(opts.ttlMs, 1),
    onInsert(value, key) {
      for (const tag of opts.tags(value)) {
        let keys = byTag.get(tag);
        if (!keys) byTag.set(tag, (keys = new Set()));
        keys.add(key);
      }
    },
    dispose(value, key) {
      for (const tag of opts.tags(value)) {
        const keys = byTag.get(tag);
        if (keys?.delete(key) && keys.size === 0) byTag.delete(tag);
      }
    },
    async fetchMethod(_key, _stale, { context: load }) {
      const token = {};
      const started = sequence;
      inflightStarts.set(token, started);
      let value: V | undefined;
      try {
        value = await load();
      } catch (err) {
        throw new LoadFailed(err);
      } finally {
        inflightStarts.delete(token);
      }
      const overtaken = value !== undefined && (started < floor || opts.tags(value).some((t) => (invalidatedAt.get(t) ?? -1) > started));
      if (inflightStarts.size === 0) invalidatedAt.clear();
      if (overtaken) throw new Superseded();
      return value;
    },
  });

  function remember(tag: string) {
    // With no load in flight, no load can have read what the invalidation replaces.
    if (inflightStarts.size === 0) return;
    invalidatedAt.set(tag, ++sequence);
    if (invalidatedAt.size > MAX_REMEMBERED) {
      floor = ++sequence;
      invalidatedAt.clear();
    }
  }

  return {
    /** The cached value, or the result of `loader` (shared with concurrent callers for the key). */
    async get(key: string, loader: Load): Promise<V | undefined> {
      if (opts.ttlMs <= 0) return loader();
      const hit = cache.get(key);
      if (hit !== undefined) return hit;
      for (let attempt = 1; attempt < ATTEMPTS; attempt++) {
        try {
          return await cache.fetch(key, { context: loader });
        } catch (err) {
          if (err instanceof LoadFailed) throw err.failure;
          // Superseded, or aborted because the key was invalidated, evicted or cleared meanwhile: load again.
        }
      }
      return loader();
    },
    /** Drops every entry tagged `tag`; loads in flight whose value has that tag will not be stored. */
    invalidate(tag: string): void {
      remember(tag);
      const keys = byTag.get(tag);
      if (!keys) return;
      byTag.delete(tag);
      for (const key of keys) cache.delete(key);
    },
    /** Drops every entry (notifications may have been missed); loads in flight will not be stored. */
    clear(): void {
      floor = ++sequence;
      invalidatedAt.clear();
      cache.clear();
    },
    /** Entries held (expired ones count until they are read or pushed out). */
    get size(): number {
      return cache.size;
    },
  };
}
