import { sql } from 'drizzle-orm';
import { bigint, index, json, pgSequence, pgTable, primaryKey, text, timestamp, uuid } from 'drizzle-orm/pg-core';
import { connections } from './connections.js';
import { runs } from './functions.js';

export type RecordAction = 'added' | 'updated' | 'deleted';

/**
 * Every change to a record takes the next value: readers page by it, so a changed record moves
 * to the end of the feed instead of being skipped or repeated.
 */
export const recordsCursorSeq = pgSequence('records_cursor_seq');

/**
 * The records store. One row per (connection, model, external id); `hash` is the content hash of
 * `data`, so an unchanged record is never rewritten. Tenancy comes from the connection.
 * `data` is `json`, not `jsonb`: records are never queried inside, and `json` keeps the text as
 * written, so ingest skips the binary conversion and reads stream it back without reformatting.
 *
 * `connection_pk` has no foreign key: deleting a connection would otherwise delete all its records
 * inside that request. Connection ids are identity values, never reused, and every read of records
 * goes through a live connection, so the records of a deleted one are unreachable until the purge
 * worker deletes them in batches (`purges`, filled by a trigger on `connections`: see the migration).
 */
export const records = pgTable(
  'records',
  {
    connectionPk: bigint('connection_pk', { mode: 'number' }).notNull(),
    model: text('model').notNull(),
    externalId: text('external_id').notNull(),
    data: json('data').$type<Record<string, unknown>>().notNull(),
    hash: text('hash').notNull(),
    lastAction: text('last_action').$type<RecordAction>().notNull(),
    cursor: bigint('cursor', { mode: 'number' })
      .notNull()
      .default(sql`nextval('records_cursor_seq')`),
    firstSeenAt: timestamp('first_seen_at', { withTimezone: true }).notNull().defaultNow(),
    modifiedAt: timestamp('modified_at', { withTimezone: true }).notNull().defaultNow(),
    deletedAt: timestamp('deleted_at', { withTimezone: true }),
  },
  (t) => [
    primaryKey({ columns: [t.connectionPk, t.model, t.externalId] }),
    index('records_feed_idx').on(t.connectionPk, t.model, t.cursor),
    // `modified_after` on a feed: the records changed since then are found without walking the
    // feed from its start (PostgreSQL picks this index when few of the feed's records qualify).
    index('records_modified_idx').on(t.connectionPk, t.model, t.modifiedAt),
  ],
);

/**
 * Live (not deleted) records per (connection, model), what sync status shows. Kept by every write
 * to the feed in the write's own transaction, under the feed's lock (so the counter is never
 * contended beyond the feed itself): per feed rather than per sync because records belong to the
 * feed, and two syncs of a connection may write one model. No row means none.
 */
export const recordCounts = pgTable(
  'record_counts',
  {
    connectionPk: bigint('connection_pk', { mode: 'number' })
      .notNull()
      .references(() => connections.id, { onDelete: 'cascade' }),
    model: text('model').notNull(),
    live: bigint('live', { mode: 'number' }).notNull().default(0),
  },
  (t) => [primaryKey({ columns: [t.connectionPk, t.model] })],
);

/**
 * The ids a full sync's run has seen, staged as its batches are written (in their transaction),
 * so the deletion of unseen records at the end is one anti-join in the database instead of every id
 * held in the worker's memory and sent as one parameter. Cleared when the run ends (or with the run).
 */
export const syncSeenIds = pgTable(
  'sync_seen_ids',
  {
    runId: uuid('run_id')
      .notNull()
      .references(() => runs.id, { onDelete: 'cascade' }),
    model: text('model').notNull(),
    externalId: text('external_id').notNull(),
  },
  (t) => [primaryKey({ columns: [t.runId, t.model, t.externalId] })],
);

/**
 * Records waiting to be deleted by the purge worker, in batches: those of deleted connections
 * (`models` null; rows written by the trigger on `connections`, whatever deleted them) or of the
 * models of a disabled sync on the connections of its integration. `position` is the last
 * connection pk whose records are gone. Postgres holds the work, so a lost queue job is re-added.
 */
export const purges = pgTable('purges', {
  id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
  connectionPks: bigint('connection_pks', { mode: 'number' }).array().notNull(),
  /** A disabled sync's purge: its integration (enabling it again finishes the purge first). */
  integrationId: bigint('integration_id', { mode: 'number' }),
  models: text('models').array(),
  position: bigint('position', { mode: 'number' }).notNull().default(0),
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
});
