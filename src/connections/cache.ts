import type { ChangeKind } from '../db/notifications.js';

interface Entry<T> {
  value: T;
  connectionPk: number;
  integrationId: number;
  environmentId: string;
  storedAt: number;
}

/**
 * Per-process cache of connection lookups, so hot reads (`GET /auth/token`, `GET /connection/{id}`)
 * cost no query. Entries go away
 * on every change notification that can touch them (credentials of the connection, its
 * integration or environment, from any process) and after `ttlMs` at the latest; callers still
 * check freshness of what they get. A generation counter keeps a lookup that raced with an
 * invalidation from storing what it read before it.
 */
export function createConnectionCache<T>(opts: { ttlMs: number; maxEntries?: number; now?: () => number }) {
  const entries = new Map<string, Entry<T>>();
  const max = opts.maxEntries ?? 50_000;
  const now = opts.now ?? Date.now;
  let generation = 0;

  return {
    key: (environmentId: string, providerConfigKey: string, connectionId: string) => `${environmentId}\u0000${providerConfigKey}\u0000${connectionId}`,
    generation: () => generation,
    get(key: string): T | undefined {
      const e = entries.get(key);
      if (!e) return undefined;
      if (now() - e.storedAt > opts.ttlMs) {
        entries.delete(key);
        return undefined;
      }
      return e.value;
    },
    /** Stores unless an invalidation happened since `seenGeneration` was read. */
    set(key: string, entry: Omit<Entry<T>, 'storedAt'>, seenGeneration: number) {
      if (seenGeneration !== generation || opts.ttlMs <= 0) return;
      if (entries.size >= max) entries.delete(entries.keys().next().value!);
      entries.set(key, { ...entry, storedAt: now() });
    },
    invalidate(kind: ChangeKind, id: string) {
      generation++;
      for (const [key, e] of entries) {
        if ((kind === 'conn' && String(e.connectionPk) === id) || (kind === 'integration' && String(e.integrationId) === id) || (kind === 'env' && e.environmentId === id)) {
          entries.delete(key);
        }
      }
    },
    get size() {
      return entries.size;
    },
  };
}
