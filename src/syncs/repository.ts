import { and, eq, getTableColumns, inArray, sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../db/client.js';
import { type RunTrigger, type SyncCheckpoint, functionConfigs, syncs } from '../db/schema/index.js';

export type SyncRow = typeof syncs.$inferSelect;
/** A sync with the facts of its enabled function (default frequency). */
export type SyncWithConfig = SyncRow & { defaultFrequencySeconds: number };

const columns = { ...getTableColumns(syncs), defaultFrequencySeconds: sql<number>`${functionConfigs.frequencySeconds}`.mapWith(Number) };

/** The syncs of one connection (optionally only some names), scoped by tenant. */
export async function listConnectionSyncs(
  db: DbOrTx,
  environmentId: string,
  connectionPk: number,
  names?: readonly string[],
): Promise<SyncWithConfig[]> {
  return listSyncs(db, environmentId, { connectionPk, names });
}

/** Syncs of one tenant by integration and/or connection, optionally only some names (at most `limit`). */
export async function listSyncs(
  db: DbOrTx,
  environmentId: string,
  f: { integrationId?: number; connectionPk?: number; names?: readonly string[]; limit?: number },
): Promise<SyncWithConfig[]> {
  return db
    .select(columns)
    .from(syncs)
    .innerJoin(functionConfigs, eq(functionConfigs.id, syncs.functionConfigId))
    .where(
      and(
        eq(syncs.environmentId, environmentId),
        f.integrationId === undefined ? undefined : eq(functionConfigs.integrationId, f.integrationId),
        f.connectionPk === undefined ? undefined : eq(syncs.connectionPk, f.connectionPk),
        f.names ? inArray(syncs.name, [...f.names]) : undefined,
      ),
    )
    .orderBy(syncs.connectionPk, syncs.name)
    .limit(f.limit ?? 10_000);
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

/** Syncs that should run now: due and free, or holding a lease that expired (their worker died). */
export async function listRunnableSyncIds(db: DbOrTx, limit: number): Promise<number[]> {
  const rows = await queryRows<{ id: string }>(
    db,
    sql`SELECT id FROM syncs
         WHERE NOT paused AND ((running_run_id IS NULL AND next_run_at <= now()) OR (running_run_id IS NOT NULL AND lease_expires_at < now()))
         ORDER BY next_run_at NULLS FIRST LIMIT ${limit}`,
  );
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
