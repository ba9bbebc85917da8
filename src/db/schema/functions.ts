import { sql } from 'drizzle-orm';
import { bigint, boolean, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { connections } from './connections.js';
import { environmentRef, timestamps } from './environments.js';
import { integrationRef } from './integrations.js';

export type FunctionType = 'sync' | 'action';

/** A built-in function enabled on an integration (with its default frequency for syncs). */
export const functionConfigs = pgTable(
  'function_configs',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    environmentId: environmentRef(),
    integrationId: integrationRef(),
    name: text('name').notNull(),
    type: text('type').$type<FunctionType>().notNull(),
    /** Syncs only: seconds between runs unless a connection overrides it. */
    frequencySeconds: integer('frequency_seconds'),
    /** Syncs only: scheduled for every connection (existing and new) without a start call. */
    autoStart: boolean('auto_start').notNull().default(true),
    ...timestamps,
  },
  (t) => [
    uniqueIndex('function_configs_integration_name_key').on(t.integrationId, t.name),
    index('function_configs_environment_idx').on(t.environmentId),
  ],
);

export type SyncCheckpoint = Record<string, string | number | boolean | null>;

/**
 * One enabled sync for one connection: its schedule, pause state, checkpoint and the run lease.
 * Postgres is the source of truth for schedules; Redis only carries the jobs derived from it.
 */
export const syncs = pgTable(
  'syncs',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    environmentId: environmentRef(),
    connectionPk: bigint('connection_pk', { mode: 'number' })
      .notNull()
      .references(() => connections.id, { onDelete: 'cascade' }),
    functionConfigId: bigint('function_config_id', { mode: 'number' })
      .notNull()
      .references(() => functionConfigs.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    paused: boolean('paused').notNull().default(false),
    /** Per-connection override of the integration's frequency. */
    frequencySeconds: integer('frequency_seconds'),
    checkpoint: jsonb('checkpoint').$type<SyncCheckpoint>(),
    /** Due when `next_run_at <= now()`; null = never scheduled (paused before it ever ran). */
    nextRunAt: timestamp('next_run_at', { withTimezone: true }),
    /** The next run ignores the checkpoint and detects deletions (a `reset` trigger). */
    resetRequested: boolean('reset_requested').notNull().default(false),
    /** Why the next run happens: its schedule, or a trigger through the API. */
    nextRunTrigger: text('next_run_trigger').$type<RunTrigger>().notNull().default('schedule'),
    /** Run lease: the run holding it is the only one for this sync; an expired lease is recovered. */
    runningRunId: uuid('running_run_id'),
    leaseExpiresAt: timestamp('lease_expires_at', { withTimezone: true }),
    lastRunId: uuid('last_run_id'),
    lastStatus: text('last_status').$type<'success' | 'error'>(),
    lastError: text('last_error'),
    lastFinishedAt: timestamp('last_finished_at', { withTimezone: true }),
    /** Start of the last successful run: records modified after it are what that run changed. */
    lastSuccessStartedAt: timestamp('last_success_started_at', { withTimezone: true }),
    ...timestamps,
  },
  (t) => [
    uniqueIndex('syncs_connection_name_key').on(t.connectionPk, t.name),
    // The scheduler's two questions, each answered by a range scan that stops at its limit: which
    // free syncs are due (oldest first), and which leases expired (their worker died).
    index('syncs_due_idx')
      .on(t.nextRunAt)
      .where(sql`NOT ${t.paused} AND ${t.runningRunId} IS NULL`),
    index('syncs_lease_idx')
      .on(t.leaseExpiresAt)
      .where(sql`NOT ${t.paused} AND ${t.runningRunId} IS NOT NULL`),
    // Integration-wide listings page one function config at a time, in id order.
    index('syncs_function_config_idx').on(t.functionConfigId, t.id),
    index('syncs_environment_idx').on(t.environmentId),
  ],
);

export type RunStatus = 'queued' | 'running' | 'success' | 'error';
export type RunTrigger = 'schedule' | 'manual' | 'api' | 'recovery';

export interface RunError {
  message: string;
  /** The provider's answer when a provider call failed. */
  upstream?: { status: number; body: string };
  code?: string;
}

/** One execution of a function (sync or action), with counts, error and attempts. */
export const runs = pgTable(
  'runs',
  {
    id: uuid('id')
      .primaryKey()
      .default(sql`gen_random_uuid()`),
    environmentId: environmentRef(),
    connectionPk: bigint('connection_pk', { mode: 'number' })
      .notNull()
      .references(() => connections.id, { onDelete: 'cascade' }),
    syncId: bigint('sync_id', { mode: 'number' }).references(() => syncs.id, { onDelete: 'cascade' }),
    type: text('type').$type<FunctionType>().notNull(),
    functionName: text('function_name').notNull(),
    trigger: text('trigger').$type<RunTrigger>().notNull(),
    status: text('status').$type<RunStatus>().notNull(),
    attempt: integer('attempt').notNull().default(1),
    /** Action runs: asked for with X-Async (their result is announced by webhook). */
    async: boolean('async').notNull().default(false),
    input: jsonb('input'),
    output: jsonb('output'),
    error: jsonb('error').$type<RunError>(),
    added: integer('added').notNull().default(0),
    updated: integer('updated').notNull().default(0),
    deleted: integer('deleted').notNull().default(0),
    fullResync: boolean('full_resync').notNull().default(false),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    startedAt: timestamp('started_at', { withTimezone: true }),
    endedAt: timestamp('ended_at', { withTimezone: true }),
  },
  (t) => [
    index('runs_sync_idx').on(t.syncId, t.createdAt),
    index('runs_environment_idx').on(t.environmentId, t.createdAt),
    // Deleting a connection cascades here; queued actions are found again after a Redis loss.
    index('runs_connection_idx').on(t.connectionPk),
    index('runs_queued_idx')
      .on(t.createdAt)
      .where(sql`${t.status} IN ('queued', 'running')`),
    // Retention walks finished runs oldest first: each batch is a range scan from the index's start.
    index('runs_finished_created_idx')
      .on(t.createdAt)
      .where(sql`${t.status} IN ('success', 'error')`),
  ],
);

export type LogLevel = 'info' | 'warn' | 'error';

/** A run's log lines (from the function's `ctx.log` and from the runtime). */
export const runLogs = pgTable(
  'run_logs',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id, { onDelete: 'cascade' }),
    at: timestamp('at', { withTimezone: true }).notNull().defaultNow(),
    level: text('level').$type<LogLevel>().notNull(),
    message: text('message').notNull(),
    data: jsonb('data').$type<Record<string, unknown>>(),
  },
  (t) => [index('run_logs_run_idx').on(t.runId, t.id)],
);
