import type { Db } from '../db/client.js';
import type { NotificationHub } from '../db/notifications.js';
import { createConnectionCache } from './cache.js';
import { type ConnectionWithIntegration, findConnection } from './repository.js';

export type ConnectionReader = ReturnType<typeof createConnectionReader>;

/**
 * Reads one connection by (environment, integration key, connection id), from a per-process cache
 * that every write invalidates in every process (writes NOTIFY `conn:<id>`, `integration:<id>` or
 * `env:<id>` in their transaction). The cached row objects are shared: callers must not mutate them.
 */
export function createConnectionReader(deps: { db: Db; hub: NotificationHub; ttlMs: number }) {
  const cache = createConnectionCache<ConnectionWithIntegration>({ ttlMs: deps.ttlMs });
  deps.hub.subscribe((kind, id) => cache.invalidate(kind, id));

  return {
    async get(environmentId: string, providerConfigKey: string, connectionId: string): Promise<ConnectionWithIntegration | undefined> {
      const key = cache.key(environmentId, providerConfigKey, connectionId);
      const hit = cache.get(key);
      if (hit) return hit;
      const generation = cache.generation();
      const row = await findConnection(deps.db, environmentId, providerConfigKey, connectionId);
      if (row) cache.set(key, { value: row, connectionPk: row.id, integrationId: row.integrationId, environmentId }, generation);
      return row;
    },
  };
}
