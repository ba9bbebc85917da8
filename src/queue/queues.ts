import { randomUUID } from 'node:crypto';
import { type JobsOptions, Queue, Worker, type Processor, type WorkerOptions } from 'bullmq';
import type { Redis } from 'ioredis';
import { z } from 'zod';
import type { Logger } from '../lib/logger.js';
import { createRedis, createRedisErrorLog, type RedisTarget } from './redis.js';

/**
 * The one registry of Terapi's queues: each queue's payload schema and default job options. Every
 * job is validated against its schema when it is added and again when a worker takes it.
 */
export const queueDefinitions = {
  /** Run one sync now if it is due (or its lease expired). Postgres decides; the job only wakes a worker. */
  syncs: {
    payload: z.object({ syncId: z.number().int().positive() }),
    options: { removeOnComplete: true, removeOnFail: 1000, attempts: 1 } satisfies JobsOptions,
  },
  /**
   * Execute one action run (created in Postgres before the job is added). `replyTo`: the process
   * waiting for the outcome (a synchronous trigger), told when the run is finished.
   */
  actions: {
    payload: z.object({ runId: z.uuid(), replyTo: z.uuid().optional() }),
    options: { removeOnComplete: { age: 3600, count: 10_000 }, removeOnFail: { age: 86_400 }, attempts: 1 } satisfies JobsOptions,
  },
  /** Deliver one webhook (retried with exponential backoff; attempts from the configuration). */
  webhooks: {
    payload: z.object({ deliveryId: z.uuid() }),
    options: { removeOnComplete: true, removeOnFail: { age: 7 * 86_400 } } satisfies JobsOptions,
  },
  /**
   * Carry out one purge of records (a `purges` row; Postgres holds the work and how far it got).
   * Failed jobs are dropped: the tick queues every purge still waiting again.
   */
  purges: {
    payload: z.object({ purgeId: z.number().int().positive() }),
    options: {
      removeOnComplete: true,
      removeOnFail: true,
      attempts: 3,
      backoff: { type: 'exponential', delay: 5000 },
    } satisfies JobsOptions,
  },
  /** The periodic tick that derives due sync jobs and undelivered webhooks from Postgres. */
  scheduler: {
    payload: z.object({}),
    options: { removeOnComplete: true, removeOnFail: true } satisfies JobsOptions,
  },
} as const;

export type QueueName = keyof typeof queueDefinitions;
export type Payload<Q extends QueueName> = z.infer<(typeof queueDefinitions)[Q]['payload']>;

export interface QueueOptions {
  target: RedisTarget;
  prefix: string;
}

/** How long a readiness probe waits for Redis to answer. */
const PING_TIMEOUT_MS = 3_000;

export type Queues = ReturnType<typeof createQueues>;

/** Producers for every queue, sharing one Redis connection, and the completion channel of action jobs. */
export function createQueues(opts: QueueOptions & { log: Logger }) {
  // Lazy: a process that never enqueues (e.g. `npm run openapi`) never connects.
  const connection = createRedis(opts.target, { maxRetriesPerRequest: 3, lazyConnect: true });
  // ioredis reconnects by itself; the queues repeat their connection's errors, so one log serves all.
  const errors = createRedisErrorLog(opts.log);
  connection.on('error', (err) => errors.error(err));
  connection.on('ready', () => errors.ready());
  const queues = new Map<QueueName, Queue>();
  const actionCompletions = createActionCompletions(opts, connection, errors);

  function queue(name: QueueName): Queue {
    let q = queues.get(name);
    if (!q) {
      q = new Queue(name, { connection, prefix: opts.prefix, defaultJobOptions: queueDefinitions[name].options });
      // The shared connection's errors come back through every queue; the one log keeps them to a line.
      q.on('error', (err) => errors.error(err, { queue: name }));
      queues.set(name, q);
    }
    return q;
  }

  return {
    async add<Q extends QueueName>(name: Q, data: Payload<Q>, jobOptions: JobsOptions = {}) {
      const payload = queueDefinitions[name].payload.parse(data);
      return queue(name).add(name, payload, jobOptions);
    },
    /** Adds many jobs of one queue in one round trip (each payload validated first; a job whose id exists is not added again). */
    async addBulk<Q extends QueueName>(name: Q, jobs: readonly { data: Payload<Q>; opts?: JobsOptions }[]) {
      if (!jobs.length) return [];
      const payload = queueDefinitions[name].payload;
      return queue(name).addBulk(jobs.map((j) => ({ name, data: payload.parse(j.data), opts: j.opts })));
    },
    queue,
    actionCompletions,
    /** Resolves when Redis answers a PING within a few seconds. */
    async ping(): Promise<void> {
      // Mid-reconnect the PING would wait for the next attempt (up to seconds): Redis is down now.
      if (connection.status === 'reconnecting') throw new Error('the redis connection is down (reconnecting)');
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`redis did not answer within ${PING_TIMEOUT_MS} ms`)), PING_TIMEOUT_MS);
      });
      try {
        await Promise.race([connection.ping(), timeout]);
      } finally {
        clearTimeout(timer);
      }
    },
    async close() {
      await Promise.all([...queues.values()].map((q) => q.close()));
      actionCompletions.close();
      connection.disconnect();
    },
  };
}

export type ActionCompletions = ReturnType<typeof createActionCompletions>;

/**
 * How a worker tells the process waiting for a synchronous action that its run is finished. The
 * outcome itself is in Postgres (written before the signal); the signal only ends the wait. When
 * the waiter is this process (`terapi serve`: API and worker in one), it is a function call that
 * hands over the finished row; otherwise one PUBLISH on the waiting process's own channel, which it
 * subscribed to before adding its first job. A signal can be lost (a subscriber reconnecting, Redis
 * down while publishing): waiters also read the row now and then.
 */
function createActionCompletions(opts: QueueOptions, publisher: Redis, errors: ReturnType<typeof createRedisErrorLog>) {
  const replyTo = randomUUID();
  const channelOf = (id: string) => `${opts.prefix}:actions:done:${id}`;
  const waiting = new Map<string, (finished: unknown) => void>();
  let subscriber: Redis | undefined;
  let subscribed: Promise<void> | undefined;
  const report = (err: unknown) => errors.error(err, { queue: 'actions', completions: true });

  function subscribe(): Promise<void> {
    subscribed ??= (async () => {
      subscriber = createRedis(opts.target, { maxRetriesPerRequest: 3, lazyConnect: true });
      subscriber.on('error', report);
      // A remote signal carries only the run id: the waiter reads the row.
      subscriber.on('message', (_channel: string, runId: string) => waiting.get(runId)?.(undefined));
      await subscriber.subscribe(channelOf(replyTo));
    })().catch((err: unknown) => {
      report(err);
      subscriber?.disconnect();
      subscribed = undefined;
    });
    return subscribed;
  }

  return {
    /** This process's address, for the payload of a job whose outcome it waits for. */
    replyTo,
    /**
     * Starts waiting for `runId`, before its job is added. `finished` resolves with the finished
     * row when this process ran the job, `undefined` when another one did or the job failed; it
     * never rejects, and without a signal it never resolves. Call `cancel` when giving up.
     */
    async wait(runId: string): Promise<{ finished: Promise<unknown>; cancel(): void }> {
      const finished = new Promise<unknown>((resolve) => waiting.set(runId, resolve));
      await subscribe();
      return { finished, cancel: () => waiting.delete(runId) };
    },
    /**
     * Runs an action job (`work` writes the run's outcome to Postgres) and then tells the process
     * waiting for it, if any, whether `work` returned or threw; a local waiter gets `result.run`.
     */
    async run<T extends { run?: unknown }>(to: string | undefined, runId: string, work: () => Promise<T>): Promise<T> {
      let finished: unknown;
      try {
        const result = await work();
        finished = result.run;
        return result;
      } finally {
        if (to === replyTo) {
          waiting.get(runId)?.(finished);
          waiting.delete(runId);
        } else if (to) {
          await publisher.publish(channelOf(to), runId).catch(report);
        }
      }
    },
    close() {
      for (const resolve of waiting.values()) resolve(undefined);
      waiting.clear();
      subscriber?.disconnect();
    },
  };
}

/** A worker for one queue, on its own connection, whose processor receives a validated payload. */
export function createWorker<Q extends QueueName>(
  name: Q,
  opts: QueueOptions & Omit<WorkerOptions, 'connection' | 'prefix'>,
  process: (data: Payload<Q>, job: Parameters<Processor>[0], token?: string) => Promise<unknown>,
): Worker {
  const { target, prefix, ...workerOptions } = opts;
  const worker = new Worker(name, async (job, token) => process(queueDefinitions[name].payload.parse(job.data) as Payload<Q>, job, token), {
    ...workerOptions,
    connection: createRedis(target, { maxRetriesPerRequest: null }),
    prefix,
  });
  return worker;
}
