import type { Db } from '../db/client.js';
import type { Logger } from '../lib/logger.js';
import { stampLastFetched } from './repository.js';

/**
 * `last_fetched_at` written behind the reads that stamp it (Nango's connection GET): stamps are
 * coalesced per connection and written together after `delayMs`, so a busy token reader costs no
 * write per request. Writes run one after the other, and a stamp never moves back.
 */
export function createFetchStamps(deps: { db: Db; log: Logger; delayMs: number }) {
  const pending = new Map<number, Date>();
  let timer: NodeJS.Timeout | undefined;
  let writing: Promise<void> = Promise.resolve();

  /** Writes the stamps gathered so far, after any write already under way (shutdown, tests). */
  function flush(): Promise<void> {
    if (timer) clearTimeout(timer);
    timer = undefined;
    const stamps = [...pending].map(([id, at]) => ({ id, at }));
    pending.clear();
    writing = writing.then(() =>
      stampLastFetched(deps.db, stamps).catch((err: unknown) =>
        deps.log.warn({ err, count: stamps.length }, 'could not stamp last_fetched_at'),
      ),
    );
    return writing;
  }

  return {
    /** Stamps a connection as read now; returns the stamp. */
    mark(connectionPk: number): Date {
      const at = new Date();
      pending.set(connectionPk, at);
      if (!timer) {
        timer = setTimeout(() => void flush(), deps.delayMs);
        timer.unref();
      }
      return at;
    },
    flush,
  };
}
