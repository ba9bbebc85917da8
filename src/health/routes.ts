import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Database } from '../db/client.js';
import { errors } from '../lib/schemas.js';

const tags = ['Operations'];

/** Liveness and readiness for load balancers and orchestrators (no authentication). */
export const healthRoutes: FastifyPluginAsyncZod<{ database: Database }> = async (app, { database }) => {
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
      summary: 'Readiness: the database answers',
      response: { 200: z.object({ status: z.literal('ready'), database: z.enum(['postgres', 'pglite']) }), ...errors(503) },
    },
    handler: async (req, reply) => {
      try {
        await database.ping();
        return { status: 'ready' as const, database: database.kind };
      } catch (err) {
        req.log.warn({ err }, 'readiness check failed');
        return reply.code(503).send({ error: 'not_ready', message: 'The database is not reachable' });
      }
    },
  });
};
