import { sql } from 'drizzle-orm';
import { bigint, index, json, pgSequence, pgTable, primaryKey, text, timestamp } from 'drizzle-orm/pg-core';
import { connections } from './connections.js';

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
 */
export const records = pgTable(
  'records',
  {
    connectionPk: bigint('connection_pk', { mode: 'number' })
      .notNull()
      .references(() => connections.id, { onDelete: 'cascade' }),
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
