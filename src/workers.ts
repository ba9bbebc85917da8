import type { Worker } from 'bullmq';
import type { Config } from './config.js';
import type { Logger } from './lib/logger.js';
import { createWorker } from './queue/queues.js';
import { createRedisErrorLog, type RedisTarget } from './queue/redis.js';
import { deleteExpired, failStaleActionRuns } from './runs/repository.js';
import type { Services } from './services.js';
import { listRunnableSyncIds } from './syncs/repository.js';

export type WorkerConfig = Pick<Config, 'queues' | 'runs'>;

export interface Workers {
  /** Finishes running actions and webhooks, hands running syncs back (resumed by the next worker). */
  stop(): Promise<void>;
  /** One scheduler pass now (also runs every TERAPI_SCHEDULER_INTERVAL_SECONDS). */
  tick(): Promise<void>;
  /** Deletes runs and events past the retention (also in the background, every minute or at once while a backlog remains). */
  housekeeping(): Promise<{ runs: number; events: number }>;
}

const TICK_ID = 'terapi-scheduler-tick';
/** How often retention runs, and how long one pass may delete (each batch a statement of its own). */
const HOUSEKEEPING_EVERY_MS = 60_000;
const HOUSEKEEPING_BUDGET_MS = 30_000;

/**
 * The BullMQ workers of one process: syncs, actions, webhook deliveries and the scheduler tick.
 * The tick derives everything from Postgres (due syncs, expired leases, undispatched events,
 * jobs lost with Redis), so losing Redis loses no work.
 */
export async function startWorkers(deps: { services: Services; config: WorkerConfig; redis: RedisTarget; log: Logger }): Promise<Workers> {
  const { services, config, log } = deps;
  const { db, queues, syncRunner, actionRunner, webhooks } = services;
  const base = { target: deps.redis, prefix: config.queues.prefix };
  const stopping = new AbortController();
  let ticks = 0;
  let housekeepingPass: Promise<{ runs: number; events: number }> | undefined;
  let lastHousekeeping = 0;

  /** One retention pass (one at a time in this process); a pass cut by its budget makes the next tick start another. */
  function startHousekeeping(): Promise<{ runs: number; events: number }> {
    housekeepingPass ??= (async () => {
      lastHousekeeping = Date.now();
      try {
        const { done, ...removed } = await deleteExpired(db, config.runs.retentionDays, {
          budgetMs: HOUSEKEEPING_BUDGET_MS,
          signal: stopping.signal,
        });
        if (!done) lastHousekeeping = 0;
        if (removed.runs || removed.events)
          log.info({ ...removed, done, retentionDays: config.runs.retentionDays }, 'old runs and events deleted');
        return removed;
      } finally {
        housekeepingPass = undefined;
      }
    })();
    return housekeepingPass;
  }

  /** A pass of its own, after the one in progress (whose cutoff may be older than the caller's changes). */
  async function housekeeping(): Promise<{ runs: number; events: number }> {
    await housekeepingPass?.catch(() => undefined);
    return startHousekeeping();
  }

  async function tick(): Promise<void> {
    ticks++;
    const due = await listRunnableSyncIds(db, 1000);
    // One round trip for all of them. A deterministic id: while one wake-up job waits, more ticks do not stack others.
    await queues.addBulk(
      'syncs',
      due.map((id) => ({ data: { syncId: id }, opts: { jobId: `sync-${id}` } })),
    );
    await webhooks.dispatch();
    if (ticks % 6 === 1) {
      // Jobs older than a few ticks that Redis does not know are lost: add them again.
      const lost = config.runs.schedulerIntervalMs * 6;
      await webhooks.requeuePending(lost);
      await services.actions.requeueQueued(lost);
      await services.purges.wake();
      const stale = await failStaleActionRuns(db, new Date(Date.now() - config.runs.actionTimeoutMs - 120_000));
      if (stale.length) log.warn({ runs: stale.map((r) => r.id) }, 'action runs lost with their worker were marked failed');
    }
    // In the background: a retention pass takes up to its budget, and the tick must not wait for it.
    if (!housekeepingPass && Date.now() - lastHousekeeping >= HOUSEKEEPING_EVERY_MS)
      startHousekeeping().catch((err: unknown) => log.warn({ err }, 'retention pass failed'));
  }

  const workers: Worker[] = [
    createWorker('syncs', { ...base, concurrency: config.queues.syncConcurrency, maxStalledCount: 10 }, async ({ syncId }) =>
      syncRunner.run(syncId, stopping.signal),
    ),
    // An action may have reached the provider before its worker died: never run it twice. The job
    // keeps only the status (the outcome is in the run row); the waiting trigger is told it is over.
    createWorker('actions', { ...base, concurrency: config.queues.actionConcurrency, maxStalledCount: 0 }, async ({ runId, replyTo }) => {
      const { status, event } = await queues.actionCompletions.run(replyTo, runId, () => actionRunner(runId));
      return { status, event };
    }),
    createWorker('webhooks', { ...base, concurrency: config.queues.webhookConcurrency }, async ({ deliveryId }, job) =>
      webhooks.deliver(deliveryId, job.attemptsMade + 1 >= (job.opts.attempts ?? 1)),
    ),
    createWorker('purges', { ...base, concurrency: 1 }, async ({ purgeId }) => services.purges.run(purgeId, stopping.signal)),
    createWorker('scheduler', { ...base, concurrency: 1 }, async () => tick()),
  ];
  // Runs record their webhook events in Postgres; dispatch them right away instead of at the next tick.
  let dispatchTimer: NodeJS.Timeout | undefined;
  const dispatchSoon = () => {
    dispatchTimer ??= setTimeout(() => {
      dispatchTimer = undefined;
      webhooks.dispatch().catch((err: unknown) => log.warn({ err }, 'webhook dispatch failed'));
    }, 20);
  };
  // A down Redis makes every worker report every reconnect attempt: one rate-limited log for all.
  const redisErrors = createRedisErrorLog(log, { message: 'queue worker error' });
  for (const w of workers) {
    if (w.name === 'syncs') w.on('completed', dispatchSoon);
    if (w.name === 'actions') w.on('completed', (job) => (job.returnvalue as { event?: boolean } | undefined)?.event && dispatchSoon());
    w.on('error', (err) => redisErrors.error(err, { queue: w.name, worker: true }));
    w.on('ready', () => redisErrors.ready());
    w.on('failed', (job, err) => {
      if (w.name !== 'webhooks') log.warn({ err, queue: w.name, jobId: job?.id }, 'job failed');
    });
  }

  // The tick's schedule lives in Redis; re-declaring it (idempotent) restores it after Redis lost it.
  const declare = () =>
    queues
      .queue('scheduler')
      .upsertJobScheduler(TICK_ID, { every: config.runs.schedulerIntervalMs }, { name: 'tick', data: {} })
      .catch((err: unknown) => log.warn({ err }, 'could not declare the scheduler tick'));
  await declare();
  const redeclare = setInterval(() => void declare(), Math.max(1000, config.runs.schedulerIntervalMs * 5));
  redeclare.unref();

  return {
    tick,
    housekeeping,
    async stop() {
      clearInterval(redeclare);
      clearTimeout(dispatchTimer);
      stopping.abort();
      syncRunner.abortAll('the worker is shutting down; the run will be resumed');
      await Promise.all(workers.map((w) => w.close()));
      await housekeepingPass?.catch(() => undefined);
    },
  };
}
