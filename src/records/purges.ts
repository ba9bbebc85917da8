import type { Db, DbOrTx } from '../db/client.js';
import type { Logger } from '../lib/logger.js';
import type { Queues } from '../queue/queues.js';
import * as repo from './purge-repository.js';

export type RecordPurger = ReturnType<typeof createRecordPurger>;

/** What connection and function writes use to purge records; they receive it from services.ts. */
export type RecordPurges = Pick<RecordPurger, 'wake' | 'forModels' | 'finishForModels'>;

/** Purges queued per wake-up (the rest wait for the next one). */
const WAKE_LIMIT = 1000;

/**
 * Deletes records that nothing can read any more, on the worker, in batches: those of deleted
 * connections (the trigger on `connections` records them in the deleting transaction, whatever
 * deleted them) and those of a disabled sync's models. The work lives in the `purges` table; a
 * queue job per purge carries it out, and `wake` (after each such write, and on the scheduler's
 * tick) queues every purge still waiting, so a job lost with Redis is added again.
 */
export function createRecordPurger(deps: { db: Db; queues: Queues; log: Logger }) {
  const { db, queues, log } = deps;

  return {
    /** Queues a job for every waiting purge (an existing job id is a no-op). Never throws: the tick tries again. */
    async wake(): Promise<void> {
      try {
        for (const id of await repo.listPurgeIds(db, WAKE_LIMIT)) await queues.add('purges', { purgeId: id }, { jobId: `purge-${id}` });
      } catch (err) {
        log.warn({ err }, 'could not queue record purges; the scheduler tick queues them');
      }
    },

    /** In a disabling transaction: these models' records on the integration's connections are to be purged. */
    forModels: (tx: DbOrTx, integrationId: number, models: readonly string[]) => repo.insertModelPurge(tx, integrationId, models),

    /** In an enabling transaction: what remains of a purge of these models is deleted now. */
    finishForModels: (tx: DbOrTx, integrationId: number, models: readonly string[]) => repo.finishModelPurges(tx, integrationId, models),

    /**
     * Carries out one purge, connection after connection, batch after batch, remembering how far
     * it got; stops between batches when `signal` aborts (the purge stays for the next job).
     */
    async run(purgeId: number, signal?: AbortSignal): Promise<{ deleted: number; done: boolean }> {
      const purge = await repo.findPurge(db, purgeId);
      if (!purge) return { deleted: 0, done: true };
      let deleted = 0;
      for (const pk of purge.connectionPks) {
        if (pk <= purge.position) continue;
        for (let n = repo.PURGE_BATCH; n === repo.PURGE_BATCH; deleted += n) {
          if (signal?.aborted) return { deleted, done: false };
          n = await repo.purgeRecordsBatch(db, pk, purge.models);
        }
        // Gone: an enabling transaction finished it meanwhile.
        if (!(await repo.advancePurge(db, purgeId, pk))) return { deleted, done: true };
      }
      await repo.deletePurge(db, purgeId);
      if (deleted) log.info({ purgeId, deleted, connections: purge.connectionPks.length }, 'records purged');
      return { deleted, done: true };
    },
  };
}
