import { PGlite } from '@electric-sql/pglite';
import { type SQL, is, sql } from 'drizzle-orm';
import { NodePgDatabase } from 'drizzle-orm/node-postgres';
import pg from 'pg';
import { type Db, type DbOrTx, queryRows } from '../db/client.js';
import { CopyOut } from './copy.js';
import type { PreparedRecord } from './batch.js';
import type { RecordAction } from '../db/schema/index.js';

/**
 * The lock of one (connection, model) feed, held by every writer to the end of its transaction, so
 * cursors are committed in the order they were taken and a reader paging by cursor never steps over
 * a row committed later.
 */
export function feedLock(connectionPk: number, model: string): SQL {
  return sql`pg_advisory_xact_lock(hashtextextended(${`${connectionPk}:${model}`}, 7))`;
}

/**
 * For each write's transaction: records have no foreign key to their connection, so the write takes
 * the key-share lock the key would have taken (a delete of the connection waits for the write, and
 * its purge then finds the rows), and fails (division by zero) when the connection is already gone,
 * instead of leaving rows that no purge would delete.
 */
export function connectionAlive(connectionPk: number): SQL {
  return sql`SELECT 1 / count(*) FROM (SELECT 1 FROM connections WHERE id = ${connectionPk} FOR KEY SHARE) AS alive`;
}

async function lockFeed(tx: DbOrTx, connectionPk: number, model: string): Promise<void> {
  await tx.execute(sql`SELECT ${feedLock(connectionPk, model)}`);
}

/**
 * The statement that moves a feed's live-record count by `delta`, for the transaction of the write
 * that changed it (after the feed's lock, which every writer of the feed holds: the counter row is
 * never contended by anything but its own feed).
 */
export function liveCountUpdate(connectionPk: number, model: string, delta: number): SQL {
  return sql`INSERT INTO record_counts AS c (connection_pk, model, live) VALUES (${connectionPk}, ${model}, ${delta})
             ON CONFLICT (connection_pk, model) DO UPDATE SET live = c.live + excluded.live`;
}

async function addLive(tx: DbOrTx, connectionPk: number, model: string, delta: number): Promise<void> {
  if (delta) await tx.execute(liveCountUpdate(connectionPk, model, delta));
}

/** Whether the feed holds any record (deleted ones included). */
export async function feedHasRecords(db: DbOrTx, connectionPk: number, model: string): Promise<boolean> {
  const rows = await queryRows<{ found: boolean }>(
    db,
    sql`SELECT EXISTS (SELECT 1 FROM records WHERE connection_pk = ${connectionPk} AND model = ${model}) AS found`,
  );
  return Boolean(rows[0]?.found);
}

/**
 * Records as the upsert's three `text[]` parameters: ids, hashes and JSON texts. As Buffers they
 * are PostgreSQL's binary array format (`EncodedBatch.arrayParameters`, for node-postgres: nothing
 * to quote or escape in ~1 KB JSON texts); as string arrays, for PGlite (it writes the text form).
 */
export interface RecordArrays {
  readonly count: number;
  readonly ids: Buffer | string[];
  readonly hashes: Buffer | string[];
  readonly data: Buffer | string[];
}

export interface WriteCounts {
  added: number;
  updated: number;
  deleted: number;
}

/**
 * Inserts new records and rewrites only those whose content hash changed (or that come back after
 * a deletion); unchanged ones are untouched, so re-running a batch changes nothing.
 * Call inside a transaction.
 */
export async function upsertRecords(
  tx: DbOrTx,
  connectionPk: number,
  model: string,
  records: readonly PreparedRecord[] | RecordArrays,
): Promise<WriteCounts> {
  const { count, ids, hashes, data } =
    'count' in records
      ? records
      : { count: records.length, ids: records.map((r) => r.id), hashes: records.map((r) => r.hash), data: records.map((r) => r.json) };
  if (!count) return { added: 0, updated: 0, deleted: 0 };
  await lockFeed(tx, connectionPk, model);
  await tx.execute(connectionAlive(connectionPk));
  // Each JSON text is cast to `json` once, which only validates it: `json` keeps the text exactly as written.
  const result = (await tx
    .execute(
      sql`WITH written AS (
          INSERT INTO records AS r (connection_pk, model, external_id, data, hash, last_action)
          SELECT ${connectionPk}, ${model}, x.i, x.d::json, x.h, 'added'
            FROM unnest(${sql.param(ids)}::text[], ${sql.param(hashes)}::text[], ${sql.param(data)}::text[]) AS x(i, h, d)
          ON CONFLICT (connection_pk, model, external_id) DO UPDATE
            SET data = excluded.data, hash = excluded.hash, modified_at = now(),
                cursor = nextval('records_cursor_seq'),
                last_action = CASE WHEN r.deleted_at IS NULL THEN 'updated' ELSE 'added' END,
                deleted_at = NULL
            WHERE r.hash <> excluded.hash OR r.deleted_at IS NOT NULL
          RETURNING last_action
        )
        SELECT count(*) FILTER (WHERE last_action = 'added')::int AS added,
               count(*) FILTER (WHERE last_action = 'updated')::int AS updated
          FROM written`,
    )
    .execute()) as { rows: { added: number; updated: number }[] };
  const row = result.rows[0];
  // Added includes records that come back after a deletion: each one is live again.
  await addLive(tx, connectionPk, model, row?.added ?? 0);
  return { added: row?.added ?? 0, updated: row?.updated ?? 0, deleted: 0 };
}

/** Marks records deleted (those not already deleted); returns how many changed. */
export async function deleteRecords(tx: DbOrTx, connectionPk: number, model: string, ids: readonly string[]): Promise<number> {
  if (!ids.length) return 0;
  await lockFeed(tx, connectionPk, model);
  const rows = await queryRows<{ n: number }>(
    tx,
    sql`WITH gone AS (
          UPDATE records SET deleted_at = now(), modified_at = now(), last_action = 'deleted', cursor = nextval('records_cursor_seq')
           WHERE connection_pk = ${connectionPk} AND model = ${model} AND deleted_at IS NULL
             AND external_id = ANY(${sql.param([...ids])}::text[])
          RETURNING 1)
        SELECT count(*)::int AS n FROM gone`,
  );
  const n = rows[0]?.n ?? 0;
  await addLive(tx, connectionPk, model, -n);
  return n;
}

/**
 * Stages the ids a full sync's run saw, in the transaction that writes them (node-postgres: the
 * upsert's binary `text[]` parameter as it is; PGlite: the ids). A repeated id changes nothing.
 */
export async function stageSeenIds(tx: DbOrTx, runId: string, model: string, ids: Buffer | string[]): Promise<void> {
  await tx.execute(sql`INSERT INTO sync_seen_ids (run_id, model, external_id)
    SELECT ${runId}, ${model}, unnest(${sql.param(ids)}::text[]) ON CONFLICT DO NOTHING`);
}

/**
 * The start of a full sync's attempt: what an earlier attempt of the run staged is dropped (the
 * attempt fetches everything again), and the returned cursor marks where this attempt's writes
 * begin: a record whose cursor is above it was written (so seen) by this attempt, staged or not.
 */
export async function startSeenIds(db: DbOrTx, runId: string): Promise<number> {
  await clearSeenIds(db, runId);
  const [row] = await queryRows<{ at: string }>(db, sql`SELECT nextval('records_cursor_seq') AS at`);
  return Number(row!.at);
}

/** Drops a run's staged ids, a batch per statement. */
export async function clearSeenIds(db: DbOrTx, runId: string, batch = 10_000): Promise<void> {
  for (let n = batch; n === batch;) {
    const rows = await queryRows<{ n: number }>(
      db,
      sql`WITH gone AS (DELETE FROM sync_seen_ids WHERE ctid = ANY(ARRAY(
            SELECT ctid FROM sync_seen_ids WHERE run_id = ${runId} LIMIT ${batch})) RETURNING 1)
          SELECT count(*)::int AS n FROM gone`,
    );
    n = rows[0]?.n ?? 0;
  }
}

/**
 * End of a successful full sync: every live record of the model that the run did not see is
 * deleted, in one anti-join. Seen means written by this attempt (cursor above `since`, e.g. by
 * COPY, which stages nothing) or staged by its upserts.
 */
export async function deleteRecordsNotSeen(
  tx: DbOrTx,
  connectionPk: number,
  model: string,
  seen: { runId: string; since: number },
): Promise<number> {
  await lockFeed(tx, connectionPk, model);
  const rows = await queryRows<{ n: number }>(
    tx,
    sql`WITH gone AS (
          UPDATE records r SET deleted_at = now(), modified_at = now(), last_action = 'deleted', cursor = nextval('records_cursor_seq')
           WHERE r.connection_pk = ${connectionPk} AND r.model = ${model} AND r.deleted_at IS NULL AND r.cursor <= ${seen.since}
             AND NOT EXISTS (SELECT 1 FROM sync_seen_ids s WHERE s.run_id = ${seen.runId} AND s.model = ${model} AND s.external_id = r.external_id)
          RETURNING 1)
        SELECT count(*)::int AS n FROM gone`,
  );
  const n = rows[0]?.n ?? 0;
  await addLive(tx, connectionPk, model, -n);
  return n;
}

export interface RecordQuery {
  connectionPk: number;
  model: string;
  after: number;
  limit: number;
  modifiedAfter?: Date;
  actions?: RecordAction[];
  ids?: string[];
}

/** The columns of a page read by `readRecords`, in this order. */
export const PAGE_COLUMNS = ['data', 'last_action', 'first_seen_at', 'modified_at', 'deleted_at', 'cursor'] as const;

/** A string as an SQL literal (quotes and backslashes escaped, whatever `standard_conforming_strings` is). */
function literal(value: string): string {
  // A query text ends at a NUL byte; PostgreSQL text cannot hold one, so no such value matches anything.
  if (value.includes('\0')) throw new Error('a NUL character in an SQL literal');
  return pg.escapeLiteral(value);
}

function integer(value: number): string {
  if (!Number.isSafeInteger(value)) throw new Error(`not an integer: ${value}`);
  return String(value);
}

/** The query of a feed page: the records after `after` in cursor order, values as literals. */
export function recordsPageQuery(q: RecordQuery): string {
  const filters = [`connection_pk = ${integer(q.connectionPk)}`, `model = ${literal(q.model)}`, `cursor > ${integer(q.after)}`];
  if (q.modifiedAfter) filters.push(`modified_at > ${literal(q.modifiedAfter.toISOString())}::timestamptz`);
  if (q.actions?.length) filters.push(`last_action IN (${q.actions.map(literal).join(', ')})`);
  if (q.ids?.length) {
    const ids = q.ids.filter((id) => !id.includes('\0'));
    filters.push(ids.length ? `external_id IN (${ids.map(literal).join(', ')})` : 'false');
  }
  return `SELECT ${PAGE_COLUMNS.join(', ')} FROM records WHERE ${filters.join(' AND ')} ORDER BY cursor LIMIT ${integer(q.limit)}`;
}

/**
 * One page of a model's change feed, in cursor order: the rows (`PAGE_COLUMNS`) in PostgreSQL's
 * binary COPY format. Read by `COPY (SELECT …) TO STDOUT`, the page arrives as the bytes the server
 * sends (JSON texts as stored, timestamps and cursors as 8-byte integers) instead of six strings
 * and an object per row, and PostgreSQL formats no timestamps. COPY takes no parameters: the
 * values are written into the query as literals (integers checked, strings escaped).
 */
export async function readRecords(db: Db, q: RecordQuery): Promise<Buffer> {
  const select = recordsPageQuery(q);
  const client = (db as unknown as { $client?: unknown }).$client;
  if (is(db, NodePgDatabase) && client instanceof pg.Pool) {
    const conn = await client.connect();
    let broken: Error | undefined;
    try {
      const copy = new CopyOut(`COPY (${select}) TO STDOUT (FORMAT binary)`);
      conn.query(copy);
      return await copy.done.catch((err: unknown) => {
        // A connection that failed in the middle of a copy is not given back to the pool.
        if (!(err instanceof pg.DatabaseError)) broken = err instanceof Error ? err : new Error(String(err));
        throw err;
      });
    } finally {
      conn.release(broken);
    }
  }
  if (client instanceof PGlite) {
    const result = await client.query(`COPY (${select}) TO '/dev/blob' (FORMAT binary)`);
    if (!result.blob) throw new Error('COPY TO /dev/blob returned no data');
    return Buffer.from(await result.blob.arrayBuffer());
  }
  throw new Error('readRecords needs a node-postgres pool or PGlite');
}

/**
 * Live (not deleted) records per model of each connection, from the kept counters (one indexed
 * read for a whole page of syncs): `result.get(connectionPk)[model]`, 0 for a model without records.
 */
export async function countRecords(
  db: DbOrTx,
  connectionPks: readonly number[],
  models: readonly string[],
): Promise<Map<number, Record<string, number>>> {
  const out = new Map<number, Record<string, number>>(connectionPks.map((pk) => [pk, Object.fromEntries(models.map((m) => [m, 0]))]));
  if (!connectionPks.length || !models.length) return out;
  const rows = await queryRows<{ connection_pk: string; model: string; live: string }>(
    db,
    sql`SELECT connection_pk, model, live FROM record_counts
         WHERE connection_pk = ANY(${sql.param([...new Set(connectionPks)])}::bigint[]) AND model = ANY(${sql.param([...new Set(models)])}::text[])`,
  );
  for (const r of rows) out.get(Number(r.connection_pk))![r.model] = Number(r.live);
  return out;
}
