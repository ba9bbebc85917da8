import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { formatFrequency } from '../functions/registry.js';
import { connectionIdSchema, cursorQuery, errors, limitQuery, providerConfigKey } from '../lib/schemas.js';
import { functionName } from '../functions/schemas.js';
import { nangoSyncStatus, toNangoSyncStatus } from './schemas.js';
import type { SyncService } from './service.js';

const syncNames = z
  .string()
  .min(1)
  .max(2000)
  .transform((s, ctx) => {
    if (s.trim() === '*') return '*' as const;
    const names = s
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean);
    for (const n of names) {
      if (!functionName.safeParse(n).success) ctx.addIssue({ code: 'custom', message: `"${n}" is not a sync name` });
    }
    return names;
  })
  .describe('Comma-separated sync names, or `*` for all');

const startPauseBody = z.object({
  provider_config_key: providerConfigKey,
  syncs: z.array(functionName).min(1).max(50),
  connection_id: connectionIdSchema.optional().describe('Only this connection (default: every connection of the integration)'),
});

/** Nango-compatible sync control: `/sync/status`, `/sync/start`, `/sync/pause`, frequency override. */
export const nangoSyncRoutes: FastifyPluginAsyncZod<{ syncs: SyncService }> = async (app, { syncs: svc }) => {
  const tags = ['Sync (Nango-compatible)'];

  app.get('/sync/status', {
    schema: {
      operationId: 'nangoSyncStatus',
      tags,
      summary: 'Sync Status (Nango)',
      description:
        'Status of syncs of an integration, for one connection or all of them, in pages: `limit` syncs at most (Nango returns all at once; ' +
        'an integration with more than `limit` syncs answers with `next_cursor`, to pass as `cursor` for the next page).',
      querystring: z.object({
        provider_config_key: providerConfigKey,
        syncs: syncNames,
        connection_id: connectionIdSchema.optional(),
        limit: limitQuery(1000, 1000),
        cursor: cursorQuery.describe('Opaque: `next_cursor` of the previous page (same query)'),
      }),
      response: {
        200: z.object({
          syncs: z.array(nangoSyncStatus),
          next_cursor: z.string().nullable().describe('Not in Nango: pass as `cursor` for the next page; null on the last page'),
        }),
        ...errors(400, 401, 404),
      },
    },
    handler: async (req) => {
      const q = req.query;
      const page = await svc.statuses(req.environment.id, q.provider_config_key, q.syncs, q.connection_id, {
        cursor: q.cursor,
        limit: q.limit,
      });
      return {
        syncs: page.syncs.map((v) => toNangoSyncStatus(v, v.latestRun, formatFrequency(v.frequencySeconds))),
        next_cursor: page.nextCursor,
      };
    },
  });

  for (const [path, paused] of [
    ['/sync/start', false],
    ['/sync/pause', true],
  ] as const) {
    app.post(path, {
      schema: {
        operationId: paused ? 'nangoPauseSyncs' : 'nangoStartSyncs',
        tags,
        summary: paused ? 'Pause Syncs (Nango)' : 'Start Syncs (Nango)',
        description: paused
          ? 'Pauses the syncs, of one connection or of every connection of the integration (all of them, however many): no run starts until they are started again (a run in progress finishes). `count` is how many syncs matched.'
          : 'Starts (or resumes) the syncs, of one connection or of every connection of the integration (all of them, however many): each runs now if it was never run or its time has come (for every connection: at the next scheduler tick), then on its schedule. `count` is how many syncs matched.',
        body: startPauseBody,
        response: { 200: z.object({ success: z.boolean(), count: z.number().int() }), ...errors(400, 401, 404) },
      },
      handler: async (req) => {
        const b = req.body;
        const count = await svc.setPaused(req.environment.id, b.provider_config_key, b.syncs, paused, b.connection_id);
        return { success: true, count };
      },
    });
  }

  app.put('/sync/update-connection-frequency', {
    schema: {
      operationId: 'nangoUpdateConnectionFrequency',
      tags,
      summary: 'Override Sync Frequency (Nango)',
      description:
        "Sets one connection's frequency for a sync (`15m`, `2h`, `1d`; 1 minute to 31 days), or `null` to go back to the integration's.",
      body: z.object({
        provider_config_key: providerConfigKey,
        connection_id: connectionIdSchema,
        sync_name: functionName,
        frequency: z.string().max(50).nullable(),
      }),
      response: { 200: z.object({ frequency: z.number().int().describe('Seconds between runs') }), ...errors(400, 401, 404) },
    },
    handler: async (req) => {
      const b = req.body;
      const { frequencySeconds } = await svc.setFrequency(
        req.environment.id,
        b.provider_config_key,
        b.connection_id,
        b.sync_name,
        b.frequency,
      );
      return { frequency: frequencySeconds };
    },
  });
};
