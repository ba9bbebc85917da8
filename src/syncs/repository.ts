import { and, eq, getTableColumns, gt, gte, inArray, type SQL, sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../db/client.js';
import { type RunTrigger, type SyncCheckpoint, functionConfigs, syncs } from '../db/schema/index.js';

export type SyncRow = typeof syncs.$inferSelect;
/** A sync with the facts of its enabled function (default frequency). */
export type SyncWithConfig = SyncRow & { defaultFrequencySeconds: number };

const columns = { ...getTableColumns(syncs), defaultFrequencySeconds: sql<number>`${functionConfigs.frequencySeconds}`.mapWith(Number) };

/** The syncs of one connection (optionally only some names), scoped by tenant: a few rows, one per enabled sync. */
export async function listConnectionSyncs(
  db: DbOrTx,
  environmentId: string,
  connectionPk: number,
  names?: readonly string[],
): Promise<SyncWithConfig[]> {
  return db
    .select(columns)
    .from(syncs)
    .innerJoin(functionConfigs, eq(functionConfigs.id, syncs.functionConfigId))
    .where(
      and(
        eq(syncs.environmentId, environmentId),
        eq(syncs.connectionPk, connectionPk),
        names ? inArray(syncs.name, [...names]) : undefined,
      ),
    )
    .orderBy(syncs.functionConfigId, syncs.id);
}

/** Where a page of syncs starts: after this sync of this function config (the listing's order). */
export type SyncPosition = readonly [functionConfigId: number, syncId: number];

/** Which syncs an integration-wide operation acts on: an integration's, optionally only some names and one connection. */
export interface SyncScope {
  integrationId: number;
  names?: readonly string[];
  connectionPk?: number;
}

/**
 * One page of a scope's syncs in (function config, id) order, after `after`. Integration-wide, the
 * page is read one function config at a time from its index, so a page costs its own rows
 * whatever the integration holds; for one connection it is that connection's few syncs.
 */
export async function pageSyncs(
  db: DbOrTx,
  environmentId: string,
  scope: SyncScope,
  after: SyncPosition | undefined,
  limit: number,
): Promise<SyncWithConfig[]> {
  const past = (r: SyncWithConfig) => !after || r.functionConfigId > after[0] || (r.functionConfigId === after[0] && r.id > after[1]);
  if (scope.connectionPk !== undefined) {
    const rows = await listConnectionSyncs(db, environmentId, scope.connectionPk, scope.names);
    return rows.filter(past).slice(0, limit);
  }
  const configs = await db
    .select({ id: functionConfigs.id })
    .from(functionConfigs)
    .where(
      and(
        eq(functionConfigs.environmentId, environmentId),
        eq(functionConfigs.integrationId, scope.integrationId),
        eq(functionConfigs.type, 'sync'),
        scope.names ? inArray(functionConfigs.name, [...scope.names]) : undefined,
        after ? gte(functionConfigs.id, after[0]) : undefined,
      ),
    )
    .orderBy(functionConfigs.id);
  const out: SyncWithConfig[] = [];
  for (const { id } of configs) {
    if (out.length >= limit) break;
    const rows = await db
      .select(columns)
      .from(syncs)
      .innerJoin(functionConfigs, eq(functionConfigs.id, syncs.functionConfigId))
      .where(
        and(
          eq(syncs.environmentId, environmentId),
          eq(syncs.functionConfigId, id),
          after && id === after[0] ? gt(syncs.id, after[1]) : undefined,
        ),
      )
      .orderBy(syncs.id)
      .limit(limit - out.length);
    out.push(...rows);
  }
  return out;
}

/**
 * Pauses or starts every sync of a scope in one statement, however many there are (an
 * integration's syncs across all its connections); returns how many matched. A start schedules
 * a never-scheduled sync now: the scheduler's next tick runs what is due.
 */
export async function setPausedInScope(db: DbOrTx, environmentId: string, scope: SyncScope, paused: boolean): Promise<number> {
  const rows = await queryRows<{ n: number }>(
    db,
    sql`WITH changed AS (
          UPDATE syncs s
             SET paused = ${paused},
                 next_run_at = ${paused ? sql`s.next_run_at` : sql`coalesce(s.next_run_at, now())`},
                 updated_at = now()
            FROM function_configs f
           WHERE f.id = s.function_config_id AND f.environment_id = ${environmentId} AND f.integration_id = ${scope.integrationId}
             AND s.environment_id = ${environmentId}
             ${scope.names ? sql`AND f.name = ANY(${sql.param([...scope.names])}::text[])` : sql``}
             ${scope.connectionPk === undefined ? sql`` : sql`AND s.connection_pk = ${scope.connectionPk}`}
          RETURNING 1)
        SELECT count(*)::int AS n FROM changed`,
  );
  return rows[0]?.n ?? 0;
}

export async function findSyncById(db: DbOrTx, id: number): Promise<SyncWithConfig | undefined> {
  const [row] = await db
    .select(columns)
    .from(syncs)
    .innerJoin(functionConfigs, eq(functionConfigs.id, syncs.functionConfigId))
    .where(eq(syncs.id, id));
  return row;
}

/**
 * Asks for a run as soon as possible: due now (a trigger during a run is kept as "due", so it
 * runs once after the current one, never stacked). `reset` also clears the checkpoint.
 */
export async function markDue(db: DbOrTx, ids: readonly number[], opts: { reset: boolean }): Promise<number[]> {
  if (!ids.length) return [];
  const rows = await db
    .update(syncs)
    .set({
      nextRunAt: sql`now()`,
      nextRunTrigger: 'manual',
      updatedAt: sql`now()`,
      ...(opts.reset && { resetRequested: true }),
    })
    .where(and(inArray(syncs.id, [...ids]), eq(syncs.paused, false)))
    .returning({ id: syncs.id });
  return rows.map((r) => r.id);
}

/** Pause keeps the schedule off until a start; start schedules the next run now. */
export async function setPaused(db: DbOrTx, ids: readonly number[], paused: boolean): Promise<number[]> {
  if (!ids.length) return [];
  const rows = await db
    .update(syncs)
    .set(
      paused
        ? { paused: true, updatedAt: sql`now()` }
        : { paused: false, nextRunAt: sql`coalesce(${syncs.nextRunAt}, now())`, updatedAt: sql`now()` },
    )
    .where(inArray(syncs.id, [...ids]))
    .returning({ id: syncs.id });
  return rows.map((r) => r.id);
}

export async function setFrequency(db: DbOrTx, id: number, seconds: number | null): Promise<void> {
  // The next run moves with the new frequency, counted from the last run (or from now).
  await db.execute(sql`
    UPDATE syncs s SET frequency_seconds = ${seconds}, updated_at = now(),
           next_run_at = CASE WHEN s.next_run_at IS NULL OR s.running_run_id IS NOT NULL THEN s.next_run_at
                              ELSE LEAST(s.next_run_at, coalesce(s.last_finished_at, now()) + make_interval(secs => coalesce(${seconds}::int, f.frequency_seconds))) END
      FROM function_configs f WHERE f.id = s.function_config_id AND s.id = ${id}`);
}

/**
 * Syncs that should run now: due and free (oldest first), and those holding a lease that expired
 * (their worker died). Two range scans of partial indexes, each stopping at `limit`: the tick's
 * cost follows what is due, not how many syncs exist.
 */
export function runnableSyncsQuery(limit: number): SQL {
  return sql`(SELECT id FROM syncs WHERE NOT paused AND running_run_id IS NULL AND next_run_at <= now()
               ORDER BY next_run_at LIMIT ${limit})
             UNION ALL
             (SELECT id FROM syncs WHERE NOT paused AND running_run_id IS NOT NULL AND lease_expires_at < now()
               ORDER BY lease_expires_at LIMIT ${limit})`;
}

/** Up to `limit` due syncs and up to `limit` expired leases (see runnableSyncsQuery). */
export async function listRunnableSyncIds(db: DbOrTx, limit: number): Promise<number[]> {
  const rows = await queryRows<{ id: string }>(db, runnableSyncsQuery(limit));
  return rows.map((r) => Number(r.id));
}

export interface Claim {
  runId: string;
  /** The run whose worker died and that this claim continues (same run, next attempt). */
  recovered: boolean;
  fullResync: boolean;
  trigger: RunTrigger;
  sync: SyncWithConfig;
}

/**
 * Takes the run lease of a sync that is due (or whose lease expired) and moves its next run one
 * period ahead. At most one holder per sync: this UPDATE is the lock.
 */
export async function claimSync(db: DbOrTx, id: number, newRunId: string, leaseMs: number): Promise<Omit<Claim, 'sync'> | undefined> {
  const rows = await queryRows<{ run_id: string; recovered: boolean; full_resync: boolean; trigger: RunTrigger }>(
    db,
    sql`WITH prev AS (SELECT id, running_run_id, reset_requested, next_run_trigger FROM syncs WHERE id = ${id} FOR UPDATE)
        UPDATE syncs s
           SET running_run_id = coalesce(prev.running_run_id, ${newRunId}::uuid),
               lease_expires_at = now() + make_interval(secs => ${leaseMs / 1000}),
               next_run_at = CASE WHEN prev.running_run_id IS NULL
                                  THEN now() + make_interval(secs => coalesce(s.frequency_seconds, f.frequency_seconds)) ELSE s.next_run_at END,
               reset_requested = false,
               next_run_trigger = 'schedule',
               updated_at = now()
          FROM prev, function_configs f
         WHERE s.id = prev.id AND f.id = s.function_config_id AND NOT s.paused
           AND ((s.running_run_id IS NULL AND s.next_run_at <= now()) OR (s.running_run_id IS NOT NULL AND s.lease_expires_at < now()))
        RETURNING s.running_run_id AS run_id, (prev.running_run_id IS NOT NULL) AS recovered,
                  prev.reset_requested AS full_resync, prev.next_run_trigger AS trigger`,
  );
  const r = rows[0];
  return r
    ? { runId: r.run_id, recovered: r.recovered, fullResync: r.full_resync, trigger: r.recovered ? 'recovery' : r.trigger }
    : undefined;
}

/** Extends the lease; false when the sync is gone or the lease is no longer this run's. */
export async function renewLease(db: DbOrTx, id: number, runId: string, leaseMs: number): Promise<boolean> {
  const rows = await db
    .update(syncs)
    .set({ leaseExpiresAt: sql`now() + make_interval(secs => ${leaseMs / 1000})` })
    .where(and(eq(syncs.id, id), eq(syncs.runningRunId, runId)))
    .returning({ id: syncs.id });
  return rows.length > 0;
}

export async function saveCheckpoint(db: DbOrTx, id: number, runId: string, checkpoint: SyncCheckpoint): Promise<boolean> {
  const rows = await db
    .update(syncs)
    .set({ checkpoint })
    .where(and(eq(syncs.id, id), eq(syncs.runningRunId, runId)))
    .returning({ id: syncs.id });
  return rows.length > 0;
}

/** Expires the lease now, so another worker resumes the run at once (graceful shutdown). */
export async function handBack(db: DbOrTx, id: number, runId: string): Promise<void> {
  await db
    .update(syncs)
    .set({ leaseExpiresAt: sql`now()` })
    .where(and(eq(syncs.id, id), eq(syncs.runningRunId, runId)));
}

/** Releases the lease and records the outcome. Returns whether another run became due meanwhile. */
export async function releaseSync(
  db: DbOrTx,
  id: number,
  runId: string,
  outcome: { status: 'success' | 'error'; error?: string; startedAt: Date; clearCheckpoint: boolean },
): Promise<{ released: boolean; dueAgain: boolean }> {
  const rows = await db
    .update(syncs)
    .set({
      runningRunId: null,
      leaseExpiresAt: null,
      lastRunId: runId,
      lastStatus: outcome.status,
      lastError: outcome.error ?? null,
      lastFinishedAt: sql`now()`,
      ...(outcome.status === 'success' && { lastSuccessStartedAt: outcome.startedAt }),
      ...(outcome.clearCheckpoint && { checkpoint: null }),
      updatedAt: sql`now()`,
    })
    .where(and(eq(syncs.id, id), eq(syncs.runningRunId, runId)))
    .returning({ due: sql<boolean>`${syncs.nextRunAt} <= now() AND NOT ${syncs.paused}` });
  return { released: rows.length > 0, dueAgain: Boolean(rows[0]?.due) };
}
