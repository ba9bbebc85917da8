import { sql } from 'drizzle-orm';
import type { Logger } from '../lib/logger.js';
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
   * Calls `listener` when notifications may have been missed: the LISTEN session was lost and is
   * listening again. Caches fed by notifications drop everything then.
   */
  onResync(listener: () => void): () => void;
  /**
   * Delivers a change to this process's listeners at once. Writers call it after their commit so
   * their own process reads its writes without waiting for the NOTIFY round trip.
   */
  emitLocal(kind: ChangeKind, id: string | number): void;
  /** Resolves at the next `kind:id` notification (or a resync), or after `timeoutMs`. */
  waitFor(kind: ChangeKind, id: string, timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export async function notifyChange(db: DbOrTx, kind: ChangeKind, id: string | number): Promise<void> {
  await db.execute(sql`SELECT pg_notify(${CHANGE_CHANNEL}, ${`${kind}:${id}`})`);
}

/** One notification per id, sent by one statement (a bulk write changes hundreds of rows per transaction). */
export async function notifyChanges(db: DbOrTx, kind: ChangeKind, ids: readonly (string | number)[]): Promise<void> {
  if (!ids.length) return;
  await db.execute(sql`SELECT pg_notify(${CHANGE_CHANNEL}, ${`${kind}:`} || id) FROM unnest(${sql.param(ids.map(String))}::text[]) AS id`);
}

export interface HubOptions {
  log: Logger;
  /** First delay before listening again after the session was lost; doubles up to `maxDelayMs`. */
  minDelayMs?: number;
  maxDelayMs?: number;
}

/**
 * The process's LISTEN session. When it is lost (server restart, failover, a terminated backend)
 * it listens again with exponential back-off, logging the loss, each failed attempt and the
 * recovery, then tells `onResync` listeners to flush what notifications would have invalidated.
 */
export async function createNotificationHub(database: Database, opts: HubOptions): Promise<NotificationHub> {
  const { log } = opts;
  const minDelayMs = opts.minDelayMs ?? 250;
  const maxDelayMs = opts.maxDelayMs ?? 30_000;
  const listeners = new Set<(kind: ChangeKind, id: string) => void>();
  const resyncListeners = new Set<() => void>();
  let unlisten: (() => Promise<void>) | undefined;
  let retryTimer: NodeJS.Timeout | undefined;
  let closed = false;

  const onMessage = (payload: string) => {
    const colon = payload.indexOf(':');
    if (colon < 0) return;
    const kind = payload.slice(0, colon) as ChangeKind;
    const id = payload.slice(colon + 1);
    for (const l of listeners) l(kind, id);
  };

  const resync = () => {
    for (const l of resyncListeners) {
      try {
        l();
      } catch (err) {
        log.error({ err }, 'cache flush after the LISTEN session came back failed');
      }
    }
  };

  const onLost = (err: Error) => {
    unlisten = undefined;
    if (closed) return;
    log.error({ err, channel: CHANGE_CHANNEL }, 'the LISTEN session for cache invalidation was lost; listening again');
    reconnect(1, Date.now());
  };

  function reconnect(attempt: number, lostAt: number) {
    const delay = Math.min(maxDelayMs, minDelayMs * 2 ** (attempt - 1));
    retryTimer = setTimeout(() => void listenAgain(attempt, lostAt), delay);
    retryTimer.unref();
  }

  async function listenAgain(attempt: number, lostAt: number) {
    retryTimer = undefined;
    if (closed) return;
    try {
      const stop = await database.listen(CHANGE_CHANNEL, onMessage, onLost);
      if (closed) return void (await stop());
      unlisten = stop;
      log.info({ channel: CHANGE_CHANNEL, attempts: attempt, downMs: Date.now() - lostAt }, 'the LISTEN session is back; caches flushed');
      // Listening first, flushing second: a change after this point arrives as a notification.
      resync();
    } catch (err) {
      log.warn(
        { err, attempt, retryInMs: Math.min(maxDelayMs, minDelayMs * 2 ** attempt) },
        'listening again for cache invalidation failed',
      );
      reconnect(attempt + 1, lostAt);
    }
  }

  unlisten = await database.listen(CHANGE_CHANNEL, onMessage, onLost);
  const subscribe = (listener: (kind: ChangeKind, id: string) => void) => {
    listeners.add(listener);
    return () => void listeners.delete(listener);
  };
  const onResync = (listener: () => void) => {
    resyncListeners.add(listener);
    return () => void resyncListeners.delete(listener);
  };
  return {
    subscribe,
    onResync,
    emitLocal(kind, id) {
      for (const l of listeners) l(kind, String(id));
    },
    waitFor(kind, id, timeoutMs) {
      return new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          off();
          offResync();
          resolve();
        };
        const timer = setTimeout(done, timeoutMs);
        const off = subscribe((k, i) => {
          if (k === kind && i === id) done();
        });
        const offResync = onResync(done);
      });
    },
    async close() {
      closed = true;
      clearTimeout(retryTimer);
      await unlisten?.();
    },
  };
}
