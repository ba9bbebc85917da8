import { createReadThroughCache } from '../lib/cache.js';
import type { EnvironmentRef } from './repository.js';

export interface KeyCache {
  /** The environment a key hash belongs to; at most one database read per hash per TTL. */
  resolve(hash: string): Promise<EnvironmentRef | undefined>;
  invalidateEnvironment(environmentId: string): void;
  /** Forgets every key (after notifications may have been missed). */
  clear(): void;
}

/**
 * Secret-key hash → environment, so authenticating a request costs no query. Rotation and
 * deletion invalidate it in every process (Postgres NOTIFY, see db/notifications.ts).
 */
export function createKeyCache(opts: { ttlMs: number; load: (hash: string) => Promise<EnvironmentRef | undefined> }): KeyCache {
  const cache = createReadThroughCache<EnvironmentRef>({ ttlMs: opts.ttlMs, maxEntries: 10_000, tags: (env) => [env.id] });
  return {
    resolve: (hash) => cache.get(hash, () => opts.load(hash)),
    invalidateEnvironment: (environmentId) => cache.invalidate(environmentId),
    clear: () => cache.clear(),
  };
}
