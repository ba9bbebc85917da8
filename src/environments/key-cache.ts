import type { EnvironmentRef } from './repository.js';

export interface KeyCache {
  /** The environment a key hash belongs to; at most one database read per hash per TTL. */
  resolve(hash: string): Promise<EnvironmentRef | undefined>;
  invalidateEnvironment(environmentId: string): void;
  clear(): void;
  readonly size: number;
}

interface Entry {
  env: EnvironmentRef;
  expiresAt: number;
}

/**
 * In-process cache of secret-key hash → environment, so authenticating a request costs no query.
 * Correctness across processes comes from invalidation (Postgres NOTIFY on rotate/delete); the TTL
 * only bounds staleness if a notification is ever missed. A generation counter stops a load that
 * raced with an invalidation from re-inserting what was just invalidated.
 */
export function createKeyCache(opts: {
  ttlMs: number;
  maxEntries?: number;
  load: (hash: string) => Promise<EnvironmentRef | undefined>;
  now?: () => number;
}): KeyCache {
  const entries = new Map<string, Entry>();
  const inflight = new Map<string, Promise<EnvironmentRef | undefined>>();
  const maxEntries = opts.maxEntries ?? 10_000;
  const now = opts.now ?? Date.now;
  let generation = 0;

  const load = (hash: string) => {
    const gen = generation;
    const promise = opts
      .load(hash)
      .then((env) => {
        if (env && gen === generation && opts.ttlMs > 0) {
          if (entries.size >= maxEntries) entries.delete(entries.keys().next().value!);
          entries.set(hash, { env, expiresAt: now() + opts.ttlMs });
        }
        return env;
      })
      .finally(() => inflight.delete(hash));
    inflight.set(hash, promise);
    return promise;
  };

  return {
    async resolve(hash) {
      const hit = entries.get(hash);
      if (hit && hit.expiresAt > now()) return hit.env;
      if (hit) entries.delete(hash);
      return inflight.get(hash) ?? load(hash);
    },
    invalidateEnvironment(environmentId) {
      generation++;
      for (const [hash, entry] of entries) if (entry.env.id === environmentId) entries.delete(hash);
      inflight.clear();
    },
    clear() {
      generation++;
      entries.clear();
      inflight.clear();
    },
    get size() {
      return entries.size;
    },
  };
}
