import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Database } from '../db/client.js';

const tags = ['Operations'];

/** How long readiness waits for each dependency. */
const CHECK_TIMEOUT_MS = 3_000;

const dependencies = ['database', 'redis'] as const;
type Dependency = (typeof dependencies)[number];
const checkState = z.enum(['ok', 'down']);
const checks = z
  .object({ database: checkState, redis: checkState })
  .describe('Each dependency: `ok`, or `down` when it did not answer in time');

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not answer within ${CHECK_TIMEOUT_MS} ms`)), CHECK_TIMEOUT_MS);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Liveness and readiness for load balancers and orchestrators (no authentication). */
export const healthRoutes: FastifyPluginAsyncZod<{ database: Database; redis: { ping(): Promise<void> } }> = async (
  app,
  { database, redis },
) => {
  // Probes run every few seconds: a dependency's failure is logged when its state changes, not per probe.
  const down = new Set<Dependency>();

  // Probes run every few seconds; their request logs would drown everything else.
  app.get('/health', {
    logLevel: 'warn',
    schema: {
      operationId: 'health',
      tags,
      security: [],
      summary: 'Liveness: the process is up',
      response: { 200: z.object({ status: z.literal('ok') }) },
    },
    handler: async () => ({ status: 'ok' as const }),
  });

  app.get('/ready', {
    logLevel: 'warn',
    schema: {
      operationId: 'ready',
      tags,
      security: [],
      summary: 'Readiness: the database and Redis answer',
      description: 'Answers 503 naming each dependency that is down (`database`, `redis`).',
      response: {
        200: z.object({ status: z.literal('ready'), database: z.enum(['postgres', 'pglite']), checks }),
        503: z.object({ error: z.literal('not_ready'), message: z.string(), checks }),
      },
    },
    handler: async (_req, reply) => {
      const results = await Promise.allSettled([within(database.ping(), 'the database'), within(redis.ping(), 'redis')]);
      const state = { database: 'ok', redis: 'ok' } as Record<Dependency, 'ok' | 'down'>;
      results.forEach((result, i) => {
        const dep = dependencies[i]!;
        if (result.status === 'rejected') {
          state[dep] = 'down';
          if (!down.has(dep)) app.log.error({ err: result.reason, dependency: dep }, `readiness: ${dep} is not reachable`);
          down.add(dep);
        } else if (down.delete(dep)) {
          app.log.info({ dependency: dep }, `readiness: ${dep} is reachable again`);
        }
      });
      const failing = dependencies.filter((d) => state[d] === 'down');
      if (failing.length) {
        return reply.code(503).send({
          error: 'not_ready' as const,
          message: `Not ready: ${failing.join(' and ')} ${failing.length > 1 ? 'are' : 'is'} not reachable`,
          checks: state,
        });
      }
      return { status: 'ready' as const, database: database.kind, checks: state };
    },
  });
};
