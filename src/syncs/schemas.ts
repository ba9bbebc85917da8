import { z } from 'zod';
import { functionName } from '../functions/schemas.js';
import type { RunRow } from '../runs/repository.js';
import { connectionIdSchema, isoDate, providerConfigKey } from '../lib/schemas.js';
import type { SyncView } from './service.js';

export const triggerSyncBody = z
  .object({
    connection_id: connectionIdSchema,
    provider_config_key: providerConfigKey,
    syncs: z
      .array(z.union([functionName, z.object({ name: functionName }).transform((s) => s.name)]))
      .min(1)
      .max(50)
      .describe('Names of syncs to trigger'),
    reset: z.boolean().optional().describe('Clear the checkpoint and run a full resync (records not seen are marked deleted)'),
    sync_mode: z
      .enum(['incremental', 'full_refresh', 'full_refresh_and_clear_cache'])
      .optional()
      .describe('Nango-compatible: `full_refresh` is `reset: true`'),
    full_resync: z.boolean().optional().describe('Nango-compatible (older clients): `true` is `reset: true`'),
    opts: z
      .object({ reset: z.boolean().optional(), emptyCache: z.boolean().optional() })
      .optional()
      .describe('Nango-compatible (its Node SDK): `opts.reset` is `reset`; `emptyCache` is accepted and ignored'),
  })
  .meta({ id: 'TriggerSyncRequest' });

export const syncTriggerResponse = z
  .object({
    success: z.boolean(),
    syncs: z.array(
      z.object({ name: z.string(), status: z.string().describe('`queued`, or `queued_after_current_run` when it is running') }),
    ),
  })
  .meta({ id: 'SyncTriggerResponse' });

export const syncStatusParams = z.object({ connection_id: connectionIdSchema, sync_name: functionName });

export const syncStatus = z
  .object({
    sync_name: z.string(),
    connection_id: z.string(),
    status: z.enum(['running', 'success', 'error', 'paused']),
    last_sync_date: z.iso.datetime().nullable().describe('End of the last run'),
    next_sync_date: z.iso.datetime().nullable().describe('When the next scheduled run starts (null when paused)'),
    records_count: z.number().int().describe("Live (not deleted) records across the sync's models"),
    error: z.string().nullable().describe('Error message if the last run failed'),
  })
  .meta({ id: 'SyncStatus' });

export function toSyncStatus(v: SyncView): z.input<typeof syncStatus> {
  return {
    sync_name: v.sync.name,
    connection_id: v.connection.connectionId,
    status: v.status,
    last_sync_date: isoDate(v.sync.lastFinishedAt),
    next_sync_date: v.sync.paused ? null : isoDate(v.sync.nextRunAt),
    records_count: Object.values(v.recordCounts).reduce((a, b) => a + b, 0),
    error: v.sync.lastStatus === 'error' ? v.sync.lastError : null,
  };
}

export const run = z
  .object({
    id: z.uuid(),
    type: z.enum(['sync', 'action']),
    function_name: z.string(),
    trigger: z.enum(['schedule', 'manual', 'api', 'recovery']),
    status: z.enum(['queued', 'running', 'success', 'error']),
    attempt: z.number().int(),
    added: z.number().int(),
    updated: z.number().int(),
    deleted: z.number().int(),
    full_resync: z.boolean(),
    error: z
      .object({ message: z.string(), code: z.string().optional(), upstream: z.object({ status: z.number(), body: z.string() }).optional() })
      .nullable(),
    created_at: z.iso.datetime(),
    started_at: z.iso.datetime().nullable(),
    ended_at: z.iso.datetime().nullable(),
  })
  .meta({ id: 'Run' });

export function toRun(r: RunRow): z.input<typeof run> {
  return {
    id: r.id,
    type: r.type,
    function_name: r.functionName,
    trigger: r.trigger,
    status: r.status,
    attempt: r.attempt,
    added: r.added,
    updated: r.updated,
    deleted: r.deleted,
    full_resync: r.fullResync,
    error: r.error ?? null,
    created_at: r.createdAt.toISOString(),
    started_at: isoDate(r.startedAt),
    ended_at: isoDate(r.endedAt),
  };
}

const upper = { running: 'RUNNING', success: 'SUCCESS', error: 'ERROR', paused: 'PAUSED' } as const;

export const nangoSyncStatus = z.object({
  id: z.string().describe("Opaque, stable id of this connection's sync (reveals no server-wide serial)"),
  connection_id: z.string(),
  name: z.string(),
  status: z.enum(['RUNNING', 'SUCCESS', 'ERROR', 'PAUSED']),
  type: z.enum(['INCREMENTAL', 'FULL']),
  frequency: z.string(),
  finishedAt: z.iso.datetime().nullable(),
  nextScheduledSyncAt: z.iso.datetime().nullable(),
  latestResult: z.record(z.string(), z.object({ added: z.number(), updated: z.number(), deleted: z.number() })).nullable(),
  recordCount: z.record(z.string(), z.number()),
  checkpoint: z.record(z.string(), z.unknown()).nullable(),
  error: z.string().nullable(),
});

export function toNangoSyncStatus(
  v: SyncView & { publicId: string },
  latest: RunRow | undefined,
  frequency: string,
): z.input<typeof nangoSyncStatus> {
  const models = Object.keys(v.definition?.models ?? {});
  return {
    id: v.publicId,
    connection_id: v.connection.connectionId,
    name: v.sync.name,
    status: upper[v.status],
    type: v.definition?.syncType === 'full' ? 'FULL' : 'INCREMENTAL',
    frequency,
    finishedAt: isoDate(v.sync.lastFinishedAt),
    nextScheduledSyncAt: v.sync.paused ? null : isoDate(v.sync.nextRunAt),
    // Runs count changes across the sync's models; a one-model sync reports them under its model.
    latestResult:
      latest && models.length
        ? { [models.length === 1 ? models[0]! : '*']: { added: latest.added, updated: latest.updated, deleted: latest.deleted } }
        : null,
    recordCount: v.recordCounts,
    checkpoint: v.sync.checkpoint ?? null,
    error: v.sync.lastStatus === 'error' ? v.sync.lastError : null,
  };
}
