import { sql } from 'drizzle-orm';
import type { Database, DbOrTx } from './client.js';

/**
 * One LISTEN session per process on one channel, fanned out to in-process subscribers. Payloads
 * are `<kind>:<id>`: `env:<uuid>` (keys, deletion), `integration:<id>`, `conn:<id>` (credentials
 * changed, refresh lease released). Sent inside transactions, so they arrive only after commit.
 */
export const CHANGE_CHANNEL = 'terapi_cache';

export type ChangeKind = 'env' | 'integration' | 'conn';

export interface NotificationHub {
  subscribe(listener: (kind: ChangeKind, id: string) => void): () => void;
  /**
   * Delivers a change to this process's listeners at once. Writers call it after their commit so
   * their own process reads its writes without waiting for the NOTIFY round trip.
   */
  emitLocal(kind: ChangeKind, id: string | number): void;
  /** Resolves at the next `kind:id` notification, or after `timeoutMs`. */
  waitFor(kind: ChangeKind, id: string, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export async function notifyChange(db: DbOrTx, kind: ChangeKind, id: string | number): Promise<void> {
  await db.execute(sql`SELECT pg_notify(${CHANGE_CHANNEL}, ${`${kind}:${id}`})`);
}

export async function createNotificationHub(database: Database): Promise<NotificationHub> {
  const listeners = new Set<(kind: ChangeKind, id: string) => void>();
  const unlisten = await database.listen(CHANGE_CHANNEL, (payload) => {
    const colon = payload.indexOf(':');
    if (colon < 0) return;
    const kind = payload.slice(0, colon) as ChangeKind;
    const id = payload.slice(colon + 1);
    for (const l of listeners) l(kind, id);
  });
  const subscribe = (listener: (kind: ChangeKind, id: string) => void) => {
    listeners.add(listener);
    return () => void listeners.delete(listener);
  };
  return {
    subscribe,
    emitLocal(kind, id) {
      for (const l of listeners) l(kind, String(id));
    },
    waitFor(kind, id, timeoutMs) {
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          off();
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        const off = subscribe((k, i) => {
          if (k === kind && i === id) done();
        });
      });
    },
    close: () => unlisten(),
  };
}
