import fastifyRateLimit from '@fastify/rate-limit';
import fastifyUnderPressure, { type FastifyUnderPressureOptions } from '@fastify/under-pressure';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Config } from '../config.js';
import type { Database } from '../db/client.js';
import { AppError } from '../lib/errors.js';
import { createRedis, type RedisTarget } from '../queue/redis.js';
import { sharedCounterStore } from './rate-limit-store.js';

/** Probes must answer whatever the load: an orchestrator restarting a busy process makes it worse. */
const probes = new Set(['/health', '/ready']);
/** Seconds a shed request is told to wait. */
const SHED_RETRY_AFTER_SECONDS = 5;
/** How often the database pool's queue is looked at (the event loop delay is sampled by the plugin). */
const POOL_CHECK_MS = 250;
/** How often a process adds its locally counted requests to the shared counters. */
const RATE_SYNC_MS = 100;

/** The answer while shedding, in the `{ error, message }` shape; probes go through. */
function shed(req: FastifyRequest, reply: FastifyReply, type: string) {
  if (probes.has(req.routeOptions.url ?? '')) return undefined;
  void reply.code(503).header('retry-after', SHED_RETRY_AFTER_SECONDS);
  const why = type === 'healthCheck' ? 'queries are queueing for a database connection' : 'its event loop is lagging';
  return { error: 'overloaded', message: `The server is overloaded (${why}); retry in ${SHED_RETRY_AFTER_SECONDS} s` };
}

export interface ProtectionOptions {
  config: Pick<Config, 'rateLimit' | 'shedding'> & { queues: { prefix: string } };
  database: Pick<Database, 'waitingForConnection'>;
  redis: RedisTarget;
}

/**
 * Load shedding (@fastify/under-pressure: 503 + Retry-After while the event loop lags or queries
 * queue for a database connection) and per-environment rate limits (@fastify/rate-limit: 429 +
 * Retry-After, counters in Redis shared by every API process). Registered before the routes.
 */
export async function registerProtection(app: FastifyInstance, opts: ProtectionOptions): Promise<void> {
  const { rateLimit, shedding } = opts.config;

  if (shedding.maxEventLoopDelayMs > 0 || shedding.maxDatabaseWaiting > 0) {
    await app.register(fastifyUnderPressure, {
      maxEventLoopDelay: shedding.maxEventLoopDelayMs,
      ...(shedding.maxDatabaseWaiting > 0 && {
        healthCheck: async () => opts.database.waitingForConnection() < shedding.maxDatabaseWaiting,
        healthCheckInterval: POOL_CHECK_MS,
      }),
      // A value returned here is sent as the response (the plugin's documented contract; its type only says void).
      pressureHandler: shed as unknown as NonNullable<FastifyUnderPressureOptions['pressureHandler']>,
    });
  }

  if (rateLimit.perEnvironment === 0 && rateLimit.perIp === 0) return;
  const redis = createRedis(opts.redis, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: true });
  // Counting fails open (skipOnError): Redis being down must not take the API down with it.
  redis.on('error', () => undefined);
  void redis.connect().catch(() => undefined);
  const counters = sharedCounterStore(redis, { prefix: `${opts.config.queues.prefix}:ratelimit:`, syncMs: RATE_SYNC_MS });
  app.addHook('onClose', async () => {
    counters.close();
    redis.disconnect();
  });

  // Route hooks run after the scopes' onRequest hooks: the environment is known by then on API routes.
  const keyOf = (req: FastifyRequest) => (req.environment ? `e${req.environment.id}` : `i${req.ip}`);
  await app.register(fastifyRateLimit, {
    store: counters.Store,
    timeWindow: rateLimit.windowMs,
    keyGenerator: keyOf,
    max: (_req, key) => (key.startsWith('e') ? rateLimit.perEnvironment : rateLimit.perIp),
    allowList: (req, key) =>
      probes.has(req.routeOptions.url ?? '') || (key.startsWith('e') ? rateLimit.perEnvironment === 0 : rateLimit.perIp === 0),
    skipOnError: true,
    // Limit headers on 429 only: every other response stays as small as it was.
    addHeadersOnExceeding: { 'x-ratelimit-limit': false, 'x-ratelimit-remaining': false, 'x-ratelimit-reset': false },
    errorResponseBuilder: (req, ctx) =>
      new AppError(
        429,
        'rate_limited',
        `Too many requests ${req.environment ? 'for this environment' : 'from this address'} (${ctx.max} per ${rateLimit.windowMs} ms); retry in ${ctx.after}`,
      ),
  });
}
