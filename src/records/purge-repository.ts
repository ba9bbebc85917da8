import { sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../db/client.js';

/*
 * The purge worker's queries: records of deleted connections and of disabled syncs' models, deleted
 * in short batches (records have no foreign key to connections; `purges` holds the work).
 */

/** Records deleted per purge statement: each batch is a short transaction of its own. */
export const PURGE_BATCH = 5000;

/**
 * Deletes up to `limit` records of one connection (of these models, or all); returns how many. The
 * rows are found by the primary key's prefix and deleted by their physical address.
 */
export async function purgeRecordsBatch(
  db: DbOrTx,
  connectionPk: number,
  models: readonly string[] | null,
  limit = PURGE_BATCH,
): Promise<number> {
  const rows = await queryRows<{ n: number }>(
    db,
    sql`WITH gone AS (
          DELETE FROM records WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM records WHERE connection_pk = ${connectionPk}
              ${models ? sql`AND model = ANY(${sql.param([...models])}::text[])` : sql``}
             LIMIT ${limit}))
          RETURNING 1)
        SELECT count(*)::int AS n FROM gone`,
  );
  return rows[0]?.n ?? 0;
}

export interface PurgeRow {
  id: number;
  connectionPks: number[];
  models: string[] | null;
  position: number;
}

/** Purges waiting (oldest first). */
export async function listPurgeIds(db: DbOrTx, limit: number): Promise<number[]> {
  const rows = await queryRows<{ id: string }>(db, sql`SELECT id FROM purges ORDER BY id LIMIT ${limit}`);
  return rows.map((r) => Number(r.id));
}

export async function findPurge(db: DbOrTx, id: number): Promise<PurgeRow | undefined> {
  const [row] = await queryRows<{ id: string; connection_pks: (string | number)[]; models: string[] | null; position: string }>(
    db,
    sql`SELECT id, connection_pks, models, position FROM purges WHERE id = ${id}`,
  );
  return row && { id: Number(row.id), connectionPks: row.connection_pks.map(Number), models: row.models, position: Number(row.position) };
}

/** Records that the purge is done up to this connection; false when the purge is gone (finished elsewhere). */
export async function advancePurge(db: DbOrTx, id: number, position: number): Promise<boolean> {
  const rows = await queryRows(db, sql`UPDATE purges SET position = ${position} WHERE id = ${id} RETURNING id`);
  return rows.length > 0;
}

export async function deletePurge(db: DbOrTx, id: number): Promise<void> {
  await db.execute(sql`DELETE FROM purges WHERE id = ${id}`);
}

/** A purge of these models' records on every connection the integration has now (a disabled sync). */
export async function insertModelPurge(db: DbOrTx, integrationId: number, models: readonly string[]): Promise<void> {
  await db.execute(sql`INSERT INTO purges (connection_pks, integration_id, models)
    SELECT coalesce(array_agg(id ORDER BY id), '{}'), ${integrationId}, ${sql.param([...models])}::text[]
      FROM connections WHERE integration_id = ${integrationId}`);
  // The live-record counters of those feeds go now (status shows none); the records follow on the worker.
  await db.execute(sql`DELETE FROM record_counts WHERE model = ANY(${sql.param([...models])}::text[])
    AND connection_pk IN (SELECT id FROM connections WHERE integration_id = ${integrationId})`);
}

/**
 * Finishes now, in the caller's transaction, the pending purges of these models on the
 * integration (a sync enabled again must not have its new records purged after it wrote them).
 */
export async function finishModelPurges(db: DbOrTx, integrationId: number, models: readonly string[]): Promise<void> {
  await db.execute(sql`WITH p AS (
      DELETE FROM purges WHERE integration_id = ${integrationId} AND models && ${sql.param([...models])}::text[]
      RETURNING connection_pks, models)
    DELETE FROM records r USING p, unnest(p.connection_pks) AS c(pk), unnest(p.models) AS m(model)
     WHERE r.connection_pk = c.pk AND r.model = m.model`);
}
