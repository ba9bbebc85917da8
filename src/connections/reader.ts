import type { Db } from '../db/client.js';
import type { NotificationHub } from '../db/notifications.js';
import { createReadThroughCache } from '../lib/cache.js';
import { type ConnectionWithIntegration, findConnection } from './repository.js';

export type ConnectionReader = ReturnType<typeof createConnectionReader>;

/**
 * Reads one connection by (environment, integration key, connection id), so hot reads
 * (`GET /auth/token`, `GET /connection/{id}`) cost no query. Every write invalidates it in every
 * process: writers NOTIFY `conn:<id>`, `integration:<id>` or `env:<id>` in their transaction and
 * emit the same change locally right after commit. The cached row objects are shared: callers
 * must not mutate them.
 */
export function createConnectionReader(deps: { db: Db; hub: NotificationHub; ttlMs: number }) {
  // Tagged as the notifications name their rows, so `conn:<id>` drops that connection's entries only.
  const cache = createReadThroughCache<ConnectionWithIntegration>({
    ttlMs: deps.ttlMs,
    maxEntries: 50_000,
    tags: (row) => [`conn:${row.id}`, `integration:${row.integrationId}`, `env:${row.environmentId}`],
  });
  deps.hub.subscribe((kind, id) => cache.invalidate(`${kind}:${id}`));
  deps.hub.onResync(() => cache.clear());

  return {
    get(environmentId: string, providerConfigKey: string, connectionId: string): Promise<ConnectionWithIntegration | undefined> {
      return cache.get(`${environmentId}\u0000${providerConfigKey}\u0000${connectionId}`, () =>
        findConnection(deps.db, environmentId, providerConfigKey, connectionId),
      );
    },
  };
}
