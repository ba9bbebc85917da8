import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ApiFamily } from '../http/families.js';
import { cursorQuery, errors, providerConfigKey } from '../lib/schemas.js';
import type { SyncService } from './service.js';
import { run, syncStatus, syncStatusParams, syncTriggerResponse, toRun, toSyncStatus, triggerSyncBody } from './schemas.js';

/** Seed `001` sync routes (`/sync/trigger`, `/sync/{connection_id}/{sync_name}`), mounted again under /v1. */
export const syncRoutes: FastifyPluginAsyncZod<{ syncs: SyncService; family: ApiFamily }> = async (app, { syncs: svc, family }) => {
  const base = family.paths.sync;
  const tags = family.tags('Sync');
  const op = family.operationId;

  app.post(`${base}/trigger`, {
    schema: {
      operationId: op('triggerSync'),
      tags,
      summary: 'Trigger Sync',
      description:
        'Runs the named syncs of a connection now. A sync that is running is run once more after the current run (triggers never stack). `reset: true` clears the checkpoint and runs a full resync.',
      body: triggerSyncBody,
      response: { 200: syncTriggerResponse, ...errors(400, 401, 404, 409) },
    },
    handler: async (req) => {
      const b = req.body;
      const reset =
        b.reset ?? b.opts?.reset ?? (b.full_resync || b.sync_mode === 'full_refresh' || b.sync_mode === 'full_refresh_and_clear_cache');
      const syncs = await svc.trigger(req.environment.id, b.provider_config_key, b.connection_id, [...new Set(b.syncs)], { reset });
      return { success: true, syncs };
    },
  });

  app.get(`${base}/:connection_id/:sync_name`, {
    schema: {
      operationId: op('getSyncStatus'),
      tags,
      summary: 'Get Sync Status',
      description: 'Returns the current status of a sync for one connection: last and next run, record count and last error.',
      params: syncStatusParams,
      querystring: z.object({ provider_config_key: providerConfigKey }),
      response: { 200: syncStatus, ...errors(400, 401, 404) },
    },
    handler: async (req) =>
      toSyncStatus(await svc.status(req.environment.id, req.query.provider_config_key, req.params.connection_id, req.params.sync_name)),
  });

  app.get(`${base}/:connection_id/:sync_name/runs`, {
    schema: {
      operationId: op('listSyncRuns'),
      tags,
      summary: 'List Sync Runs',
      description: 'The most recent runs of a sync for one connection, newest first, with counts and errors.',
      params: syncStatusParams,
      querystring: z.object({ provider_config_key: providerConfigKey, limit: z.coerce.number().int().min(1).max(100).default(20) }),
      response: { 200: z.object({ runs: z.array(run) }), ...errors(400, 401, 404) },
    },
    handler: async (req) => ({
      runs: (
        await svc.runs(req.environment.id, req.query.provider_config_key, req.params.connection_id, req.params.sync_name, req.query.limit)
      ).map(toRun),
    }),
  });
};

const runParams = z.object({ run_id: z.uuid() });

/** Runs of syncs and actions and their logs. */
export const runRoutes: FastifyPluginAsyncZod<{ syncs: SyncService }> = async (app, { syncs: svc }) => {
  const tags = ['Runs'];
  app.get('/runs/:run_id', {
    schema: {
      operationId: 'getRun',
      tags,
      summary: 'Get Run',
      description: 'One run of a sync or action: status, trigger, attempt, counts and error.',
      params: runParams,
      response: { 200: run, ...errors(400, 401, 404) },
    },
    handler: async (req) => toRun(await svc.run(req.environment.id, req.params.run_id)),
  });

  app.get('/runs/:run_id/logs', {
    schema: {
      operationId: 'getRunLogs',
      tags,
      summary: 'Get Run Log',
      description:
        'The log lines of a run in order. Page with `after`: the `next_after` of the previous page, or the `id` of the last line already read.',
      params: runParams,
      querystring: z.object({
        after: cursorQuery.describe('Opaque: `next_after` of the previous page, or a line `id` of this run'),
        limit: z.coerce.number().int().min(1).max(1000).default(200),
      }),
      response: {
        200: z.object({
          logs: z.array(
            z.object({
              id: z.string().describe('Opaque, stable id of the line within its run: pass it as `after` to read the lines that follow'),
              at: z.iso.datetime(),
              level: z.enum(['info', 'warn', 'error']),
              message: z.string(),
              data: z.record(z.string(), z.unknown()).nullable(),
            }),
          ),
          next_after: z.string().nullable().describe('`after` for the next page; null on the last page'),
        }),
        ...errors(400, 401, 404),
      },
    },
    handler: async (req) => {
      const page = await svc.runLogs(req.environment.id, req.params.run_id, req.query.after, req.query.limit);
      return {
        logs: page.logs.map((l) => ({ id: l.id, at: l.at.toISOString(), level: l.level, message: l.message, data: l.data ?? null })),
        next_after: page.nextAfter,
      };
    },
  });
};
