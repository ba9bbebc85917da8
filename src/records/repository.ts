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

async function lockFeed(tx: DbOrTx, connectionPk: number, model: string): Promise<void> {
  await tx.execute(sql`SELECT ${feedLock(connectionPk, model)}`);
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
  return rows[0]?.n ?? 0;
}

/** End of a successful full sync: every live record of the model that the run did not see is deleted. */
export async function deleteRecordsNotSeen(tx: DbOrTx, connectionPk: number, model: string, seen: readonly string[]): Promise<number> {
  await lockFeed(tx, connectionPk, model);
  const rows = await queryRows<{ n: number }>(
    tx,
    sql`WITH seen AS (SELECT unnest(${sql.param([...seen])}::text[]) AS external_id),
        gone AS (
          UPDATE records r SET deleted_at = now(), modified_at = now(), last_action = 'deleted', cursor = nextval('records_cursor_seq')
           WHERE r.connection_pk = ${connectionPk} AND r.model = ${model} AND r.deleted_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM seen s WHERE s.external_id = r.external_id)
          RETURNING 1)
        SELECT count(*)::int AS n FROM gone`,
  );
  return rows[0]?.n ?? 0;
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

/** Live (not deleted) records per model of one connection. */
export async function countRecords(db: DbOrTx, connectionPk: number, models: readonly string[]): Promise<Record<string, number>> {
  const out: Record<string, number> = Object.fromEntries(models.map((m) => [m, 0]));
  if (!models.length) return out;
  const rows = await queryRows<{ model: string; n: number }>(
    db,
    sql`SELECT model, count(*)::int AS n FROM records
         WHERE connection_pk = ${connectionPk} AND model = ANY(${sql.param([...models])}::text[]) AND deleted_at IS NULL
         GROUP BY model`,
  );
  for (const r of rows) out[r.model] = r.n;
  return out;
}
