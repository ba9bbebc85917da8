import { and, desc, eq, getTableColumns, inArray, lt, type SQL, sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../db/client.js';
import {
  connections,
  functionConfigs,
  integrations,
  type LogLevel,
  type RunError,
  type RunStatus,
  runLogs,
  runs,
} from '../db/schema/index.js';

export type RunRow = typeof runs.$inferSelect;
export type NewRun = typeof runs.$inferInsert;

export async function insertRun(db: DbOrTx, values: NewRun): Promise<RunRow> {
  const [row] = await db.insert(runs).values(values).returning();
  return row!;
}

export async function findRun(db: DbOrTx, environmentId: string, id: string): Promise<RunRow | undefined> {
  const [row] = await db
    .select()
    .from(runs)
    .where(and(eq(runs.environmentId, environmentId), eq(runs.id, id)));
  return row;
}

export async function findRunById(db: DbOrTx, id: string): Promise<RunRow | undefined> {
  const [row] = await db.select().from(runs).where(eq(runs.id, id));
  return row;
}

export async function findRunsById(db: DbOrTx, ids: readonly string[]): Promise<RunRow[]> {
  return ids.length
    ? db
        .select()
        .from(runs)
        .where(inArray(runs.id, [...ids]))
    : [];
}

/** Marks a queued (or recovered) run as running; returns false when it is gone or already finished. */
export async function startRun(db: DbOrTx, id: string, attempt?: number): Promise<boolean> {
  const rows = await db
    .update(runs)
    .set({ status: 'running', startedAt: sql`coalesce(${runs.startedAt}, now())`, ...(attempt && { attempt }) })
    .where(and(eq(runs.id, id), sql`${runs.status} IN ('queued', 'running')`))
    .returning({ id: runs.id });
  return rows.length > 0;
}

/** The statement that adds a batch's counts to a run, for the batch's own transaction. */
export function runCountsUpdate(db: DbOrTx, id: string, c: { added: number; updated: number; deleted: number }): SQL {
  return db
    .update(runs)
    .set({
      added: sql`${runs.added} + ${c.added}`,
      updated: sql`${runs.updated} + ${c.updated}`,
      deleted: sql`${runs.deleted} + ${c.deleted}`,
    })
    .where(eq(runs.id, id))
    .getSQL();
}

export async function addRunCounts(db: DbOrTx, id: string, c: { added: number; updated: number; deleted: number }): Promise<void> {
  if (!c.added && !c.updated && !c.deleted) return;
  await db.execute(runCountsUpdate(db, id, c));
}

export async function finishRun(
  db: DbOrTx,
  id: string,
  result: { status: Extract<RunStatus, 'success' | 'error'>; output?: unknown; error?: RunError },
): Promise<RunRow | undefined> {
  const [row] = await db
    .update(runs)
    .set({ status: result.status, output: result.output ?? null, error: result.error ?? null, endedAt: sql`now()` })
    .where(and(eq(runs.id, id), sql`${runs.status} IN ('queued', 'running')`))
    .returning();
  return row;
}

// An action costs one statement to queue, one to claim and one to finish. The claim and the finish
// are built once per database and prepared on the server: a no-op action is dominated by these
// round trips, and building a drizzle query costs more CPU than the statement does in Postgres.
const actionQueries = (db: DbOrTx) => ({
  // With the keys of its connection, so the worker can read the connection from the cache.
  claim: db
    .update(runs)
    .set({ status: 'running', startedAt: sql`now()` })
    .from(connections)
    .innerJoin(integrations, eq(integrations.id, connections.integrationId))
    .where(and(eq(runs.id, sql.placeholder('id')), eq(runs.status, 'queued'), eq(connections.id, runs.connectionPk)))
    .returning({ ...getTableColumns(runs), providerConfigKey: integrations.uniqueKey, connectionId: connections.connectionId })
    .prepare('terapi_claim_action_run'),
  finish: db
    .update(runs)
    // JSON text (or NULL) cast here: a placeholder given to a jsonb column would store `null` as JSON null.
    .set({
      status: sql`${sql.placeholder('status')}`,
      output: sql`${sql.placeholder('output')}::jsonb`,
      error: sql`${sql.placeholder('error')}::jsonb`,
      endedAt: sql`now()`,
    })
    .where(and(eq(runs.id, sql.placeholder('id')), sql`${runs.status} IN ('queued', 'running')`))
    .returning()
    .prepare('terapi_finish_action_run'),
});
const preparedActionQueries = new WeakMap<object, ReturnType<typeof actionQueries>>();
function actionQueriesOf(db: DbOrTx) {
  let q = preparedActionQueries.get(db);
  if (!q) {
    q = actionQueries(db);
    preparedActionQueries.set(db, q);
  }
  return q;
}

/**
 * A new queued action run (`trigger: api`), inserted only if the action is enabled on the
 * integration (the check and the insert are one statement); undefined when it is not enabled.
 */
export async function insertActionRunIfEnabled(
  db: DbOrTx,
  v: { environmentId: string; connectionPk: number; integrationId: number; functionName: string; async: boolean; input: unknown },
): Promise<{ id: string } | undefined> {
  const [row] = await queryRows<{ id: string }>(
    db,
    sql`INSERT INTO ${runs} (environment_id, connection_pk, type, function_name, trigger, status, async, input)
        SELECT ${v.environmentId}, ${v.connectionPk}, 'action', ${v.functionName}, 'api', 'queued', ${v.async}, ${JSON.stringify(v.input)}::jsonb
        WHERE EXISTS (SELECT 1 FROM ${functionConfigs} f
                      WHERE f.environment_id = ${v.environmentId} AND f.integration_id = ${v.integrationId} AND f.name = ${v.functionName})
        RETURNING id`,
  );
  return row;
}

/**
 * Moves a queued action run to running and returns it with its connection's keys; undefined when
 * it is gone or no longer queued (someone else took it).
 */
export async function claimActionRun(
  db: DbOrTx,
  id: string,
): Promise<(RunRow & { providerConfigKey: string; connectionId: string }) | undefined> {
  const [row] = await actionQueriesOf(db).claim.execute({ id });
  return row;
}

/** Records an action run's outcome; undefined when it had already finished (e.g. failed as lost). */
export async function finishActionRun(
  db: DbOrTx,
  id: string,
  result: { status: Extract<RunStatus, 'success' | 'error'>; output?: unknown; error?: RunError },
): Promise<RunRow | undefined> {
  const [row] = await actionQueriesOf(db).finish.execute({
    id,
    status: result.status,
    output: result.output === undefined || result.output === null ? null : JSON.stringify(result.output),
    error: result.error ? JSON.stringify(result.error) : null,
  });
  return row;
}

export async function listSyncRuns(db: DbOrTx, environmentId: string, syncId: number, limit: number): Promise<RunRow[]> {
  return db
    .select()
    .from(runs)
    .where(and(eq(runs.environmentId, environmentId), eq(runs.syncId, syncId)))
    .orderBy(desc(runs.createdAt))
    .limit(limit);
}

export interface LogLine {
  level: LogLevel;
  message: string;
  data?: Record<string, unknown>;
  at?: Date;
}

export async function insertRunLogs(db: DbOrTx, runId: string, lines: readonly LogLine[]): Promise<void> {
  if (!lines.length) return;
  await db
    .insert(runLogs)
    .values(lines.map((l) => ({ runId, level: l.level, message: l.message, data: l.data ?? null, at: l.at ?? new Date() })));
}

export async function listRunLogs(db: DbOrTx, runId: string, afterId: number, limit: number) {
  return db
    .select({ id: runLogs.id, at: runLogs.at, level: runLogs.level, message: runLogs.message, data: runLogs.data })
    .from(runLogs)
    .where(and(eq(runLogs.runId, runId), sql`${runLogs.id} > ${afterId}`))
    .orderBy(runLogs.id)
    .limit(limit);
}

export interface ExpiredDeletion {
  runs: number;
  events: number;
  /** False when the time budget ended the pass before everything past the cutoff was deleted. */
  done: boolean;
}

/** Rows per DELETE: each is its own short statement (and transaction), so no lock is held for long. */
const EXPIRED_BATCH = 2000;

/** One batch of retention: finished runs created before `cutoff`, oldest first (their logs go by cascade). */
export const expiredRunsBatch = (cutoff: string, batch: number): SQL =>
  sql`DELETE FROM runs WHERE id IN (
        SELECT id FROM runs WHERE status IN ('success', 'error') AND created_at < ${cutoff}::timestamptz
         ORDER BY created_at LIMIT ${batch} FOR UPDATE SKIP LOCKED)`;

/** One batch of retention: dispatched events created before `cutoff` with no delivery still pending. */
export const expiredEventsBatch = (cutoff: string, batch: number): SQL =>
  sql`DELETE FROM events WHERE id IN (
        SELECT id FROM events WHERE delivered_at IS NOT NULL AND created_at < ${cutoff}::timestamptz
           AND NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.event_id = events.id AND d.status = 'pending')
         ORDER BY created_at LIMIT ${batch} FOR UPDATE SKIP LOCKED)`;

const affected = (x: unknown) =>
  Number((x as { rowCount?: number; affectedRows?: number }).rowCount ?? (x as { affectedRows?: number }).affectedRows ?? 0);

/**
 * Housekeeping: deletes finished runs (their logs go with them) and dispatched events (with their
 * deliveries) older than the retention, batch after batch until none is left or `budgetMs` has
 * passed or `signal` aborts (the next pass goes on). Each batch is a range scan of a partial index on `created_at`,
 * oldest first; SKIP LOCKED lets several workers delete at once without waiting on each other.
 */
export async function deleteExpired(
  db: DbOrTx,
  retentionDays: number,
  opts: { budgetMs?: number; batchSize?: number; signal?: AbortSignal } = {},
): Promise<ExpiredDeletion> {
  const batch = opts.batchSize ?? EXPIRED_BATCH;
  const deadline = Date.now() + (opts.budgetMs ?? Infinity);
  // One cutoff for the whole pass: rows that expire meanwhile wait for the next one.
  const cutoff = new Date(Date.now() - retentionDays * 86_400_000).toISOString();
  const total = { runs: 0, events: 0 };
  let runsLeft = true;
  let eventsLeft = true;
  while ((runsLeft || eventsLeft) && Date.now() < deadline && !opts.signal?.aborted) {
    if (runsLeft) {
      const n = affected(await db.execute(expiredRunsBatch(cutoff, batch)));
      total.runs += n;
      runsLeft = n === batch;
    }
    if (eventsLeft) {
      const n = affected(await db.execute(expiredEventsBatch(cutoff, batch)));
      total.events += n;
      eventsLeft = n === batch;
    }
  }
  return { ...total, done: !runsLeft && !eventsLeft };
}

/** Action runs stuck in `queued`/`running` longer than `olderThan` (their worker died). */
export async function failStaleActionRuns(db: DbOrTx, olderThan: Date): Promise<RunRow[]> {
  return db
    .update(runs)
    .set({
      status: 'error',
      endedAt: sql`now()`,
      error: {
        message: 'The worker running this action stopped before it finished; the action may or may not have been performed.',
        code: 'worker_lost',
      },
    })
    .where(and(eq(runs.type, 'action'), sql`${runs.status} IN ('queued', 'running')`, lt(runs.createdAt, olderThan)))
    .returning();
}
