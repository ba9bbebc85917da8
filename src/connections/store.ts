import type { Db } from '../db/client.js';
import { type NotificationHub, notifyChanges } from '../db/notifications.js';
import { type NewEvent, recordEvents } from '../events/repository.js';
import type { FunctionSchedules } from '../functions/service.js';
import * as repo from './repository.js';

/** A connection write and, for new credentials, the integration facts of its `auth` event. */
export interface StoreItem {
  values: repo.ConnectionWrite;
  auth?: { providerConfigKey: string; provider: string };
}

export function createConnectionStore(deps: {
  db: Db;
  hub: Pick<NotificationHub, 'emitLocal'>;
  /** A new connection gets the syncs enabled on its integration, in the transaction that creates it. */
  schedules: Pick<FunctionSchedules, 'createForConnections'>;
}) {
  const { db } = deps;
  /**
   * The one write of connection rows, in one transaction of a few set-based statements however many
   * rows: new connections get their integration's syncs; new credentials (`auth`) are an `auth`
   * webhook (creation or override) unless `events` is off, as when the end user authorizes through
   * Connect; every process's caches drop the updated rows once it commits. A new row needs no
   * notification: no cache holds a connection that did not exist. The (integration, connection id)
   * pairs must be distinct. Returns the stored rows in the order of `items`.
   */
  return async function storeMany(items: readonly StoreItem[], opts: { events: boolean }) {
    const rows = await db.transaction(async (tx) => {
      const stored = await repo.upsertConnections(
        tx,
        items.map((i) => i.values),
      );
      const byKey = new Map(stored.map((r) => [`${r.integrationId}\u0000${r.connectionId}`, r]));
      const ordered = items.map((i) => byKey.get(`${i.values.integrationId}\u0000${i.values.connectionId}`)!);
      await deps.schedules.createForConnections(
        tx,
        ordered.filter((r) => r.inserted).map((r) => r.id),
      );
      if (opts.events) {
        const events: NewEvent[] = [];
        items.forEach(({ auth }, i) => {
          const row = ordered[i]!;
          if (!auth) return;
          events.push({
            environmentId: row.environmentId,
            type: 'auth',
            operation: row.inserted ? 'creation' : 'override',
            success: true,
            providerConfigKey: auth.providerConfigKey,
            connectionId: row.connectionId,
            payload: { provider: auth.provider, authMode: row.credentialsType, endUser: row.endUser ?? null, tags: row.tags },
          });
        });
        await recordEvents(tx, events);
      }
      await notifyChanges(
        tx,
        'conn',
        ordered.filter((r) => !r.inserted).map((r) => r.id),
      );
      return ordered;
    });
    for (const r of rows) if (!r.inserted) deps.hub.emitLocal('conn', r.id);
    return rows;
  };
}
