import { is, type SQL, sql } from 'drizzle-orm';
import { NodePgDatabase } from 'drizzle-orm/node-postgres';
import { PgDialect } from 'drizzle-orm/pg-core';
import pg from 'pg';
import type { Db } from '../db/client.js';
import { records as recordsTable } from '../db/schema/index.js';
import { COPY_COLUMNS, EncodedBatch, lastOfEachId } from './batch.js';
import { PipelinedCopy } from './copy.js';
import {
  clearSeenIds,
  connectionAlive,
  deleteRecords,
  deleteRecordsNotSeen,
  feedHasRecords,
  feedLock,
  liveCountUpdate,
  stageSeenIds,
  startSeenIds,
  upsertRecords,
  type WriteCounts,
} from './repository.js';
import { errorCode } from '../lib/errors.js';

/** Records (and encoded bytes) waiting for their write, beyond which `save` waits; one batch is always accepted. */
const MAX_QUEUED_RECORDS = 5000;
const MAX_QUEUED_BYTES = 32 * 1024 * 1024;
/**
 * Records (and encoded bytes) queued before a write starts on its own; below that, a write waits
 * at most MAX_GROUP_DELAY_MS for more.
 */
const MIN_GROUP_RECORDS = 1000;
const MIN_GROUP_BYTES = 1024 * 1024;
const MAX_GROUP_DELAY_MS = 20;
/** Records (and encoded bytes) in one transaction at most, when queued batches are written together. */
const MAX_GROUP_RECORDS = 5000;
const MAX_GROUP_BYTES = 16 * 1024 * 1024;
const UNIQUE_VIOLATION = '23505';
const dialect = new PgDialect();
const COPY_COLUMN_LIST = sql.join(
  COPY_COLUMNS.map((name) => sql.identifier(name)),
  sql`, `,
);

export interface RecordWriterOptions {
  connectionPk: number;
  /** A statement for each write's transaction, given its counts (the run's totals). */
  onCounts(counts: WriteCounts): SQL;
  /**
   * A full sync's run, whose upserts stage the ids they write (for `deleteUnseenRecords`). COPY
   * stages nothing: its records are new, and their cursors show this attempt wrote them.
   */
  stageSeenFor?(): string | undefined;
}

export type RecordWriter = ReturnType<typeof createRecordWriter>;

/**
 * Writes one run's records behind the function: `save` queues a batch and returns, so the function
 * fetches and prepares its next batches while the database writes the ones before. One write at a
 * time; batches that queued up meanwhile (same model, no id in common) are written together in one
 * transaction, so a function saving page by page does not pay a commit per page. Each transaction
 * also adds its counts to the run. Every other call waits for the queue (`flush`): a checkpoint is
 * never saved ahead of its records. A failed write fails that call and every call after it.
 *
 * How a write goes. On node-postgres, when the feed (connection, model) was empty when the run first
 * wrote to it, or the feed's last write held only new records, the records are expected to be all
 * new: they are encoded for COPY and sent in one round trip (BEGIN, the feed lock, COPY, the counts,
 * COMMIT). If the feed holds one of their ids after all, COPY stops at the unique violation, the
 * transaction is rolled back and the records are upserted. Every other write (and every write on
 * PGlite) is an upsert: new records inserted, changed ones rewritten, unchanged ones left alone.
 * Both ways take the feed's lock before the first cursor, so cursors commit in order.
 */
export function createRecordWriter(db: Db, opts: RecordWriterOptions) {
  const { connectionPk } = opts;
  const client = (db as unknown as { $client?: unknown }).$client;
  const pool = is(db, NodePgDatabase) && client instanceof pg.Pool ? client : undefined;
  /** Per model: whether its next write is expected to hold only new records. */
  const expectNew = new Map<string, boolean>();
  const counts = new Map<string, WriteCounts>();
  /** Batches not yet being written, oldest first. */
  const queued: EncodedBatch[] = [];
  let queuedRecords = 0;
  let queuedBytes = 0;
  /** The loop writing the queue, while there is one. */
  let writing: Promise<void> | undefined;
  /** A write is due before the queue is ready while this is above 0 (`flush`, the delay's timer). */
  let flushing = 0;
  let timer: NodeJS.Timeout | undefined;
  /** Called when the queue shrinks or a write fails. */
  let waiters: (() => void)[] = [];
  let failure: { error: unknown } | undefined;

  const tally = (model: string, c: WriteCounts) => {
    const total = counts.get(model) ?? { added: 0, updated: 0, deleted: 0 };
    total.added += c.added;
    total.updated += c.updated;
    total.deleted += c.deleted;
    counts.set(model, total);
  };
  const wake = () => {
    const w = waiters;
    waiters = [];
    for (const resolve of w) resolve();
  };

  /** COPY in one round trip; undefined when an id already exists (then nothing was written). */
  async function copyNew(p: pg.Pool, group: readonly EncodedBatch[], count: number): Promise<WriteCounts | undefined> {
    const c = { added: count, updated: 0, deleted: 0 };
    const statements = [
      sql`BEGIN`,
      sql`SELECT ${feedLock(connectionPk, group[0]!.model)}`,
      connectionAlive(connectionPk),
      sql`COPY ${recordsTable} (${COPY_COLUMN_LIST}) FROM STDIN (FORMAT binary)`,
      liveCountUpdate(connectionPk, group[0]!.model, count),
      opts.onCounts(c),
      sql`COMMIT`,
    ];
    // Inlined: a simple Query takes no parameters (the values are the connection, the model, the
    // run's id and counts; drizzle quotes strings, and standard_conforming_strings is on).
    const text = dialect.sqlToQuery(sql.join(statements, sql`; `).inlineParams()).sql;
    const conn = await p.connect();
    let broken: Error | undefined;
    try {
      const copy = new PipelinedCopy(text, EncodedBatch.copyData(group));
      conn.query(copy);
      const tags = await copy.done.catch(async (err: unknown) => {
        // The query stopped at the error, leaving its transaction open and aborted.
        await conn.query('ROLLBACK').catch((e: Error) => (broken = e));
        if (errorCode(err) === UNIQUE_VIOLATION) return undefined;
        throw err;
      });
      if (!tags) return undefined;
      if (!tags.includes(`COPY ${count}`)) throw new Error(`COPY of ${count} records answered ${tags.join(', ')}`);
      return c;
    } finally {
      conn.release(broken);
    }
  }

  async function upsert(group: readonly EncodedBatch[]): Promise<WriteCounts> {
    // Binary arrays for node-postgres (a COPY batch that met an existing id is encoded again); PGlite takes the texts.
    const rows = pool
      ? EncodedBatch.arrayParameters(
          group.map((b) => (b.encoding === 'arrays' ? b : EncodedBatch.of('arrays', connectionPk, b.model, b.records()))),
        )
      : group.flatMap((b) => b.records());
    const stageFor = opts.stageSeenFor?.();
    return db.transaction(async (tx) => {
      const c = await upsertRecords(tx, connectionPk, group[0]!.model, rows);
      if (c.added || c.updated) await tx.execute(opts.onCounts(c));
      if (stageFor) await stageSeenIds(tx, stageFor, group[0]!.model, Array.isArray(rows) ? rows.map((r) => r.id) : rows.ids);
      return c;
    });
  }

  /** One transaction for these batches (one model, one encoding, no id in two of them). */
  async function write(group: readonly EncodedBatch[]): Promise<void> {
    const { model, encoding } = group[0]!;
    const count = group.reduce((n, b) => n + b.count, 0);
    let c = encoding === 'copy' ? await copyNew(pool!, group, count) : undefined;
    if (!c) {
      c = await upsert(group);
      expectNew.set(model, c.added === count);
    }
    tally(model, c);
  }

  /** The first queued batch and those after it that can share its transaction. */
  function takeGroup(): EncodedBatch[] {
    const first = queued.shift()!;
    const group = [first];
    let n = first.count;
    let bytes = first.size;
    let ids: Set<string> | undefined;
    for (let next = queued[0]; next; next = queued[0]) {
      if (next.model !== first.model || next.encoding !== first.encoding) break;
      if (n + next.count > MAX_GROUP_RECORDS || bytes + next.size > MAX_GROUP_BYTES) break;
      ids ??= new Set(first.ids);
      // An id in both would be written twice in one statement: the later batch waits for its own write.
      if ([...next.ids].some((id) => ids!.has(id))) break;
      for (const id of next.ids) ids.add(id);
      group.push(queued.shift()!);
      n += next.count;
      bytes += next.size;
    }
    queuedRecords -= n;
    queuedBytes -= bytes;
    return group;
  }

  /** Whether the queue holds enough for a write of its own (or someone waits for it to empty). */
  const ready = () => flushing > 0 || queuedRecords >= MIN_GROUP_RECORDS || queuedBytes >= MIN_GROUP_BYTES;

  async function drain(): Promise<void> {
    while (queued.length && !failure && ready()) {
      const group = takeGroup();
      wake();
      try {
        await write(group);
      } catch (error) {
        failure ??= { error };
        queued.length = 0;
        queuedRecords = 0;
        queuedBytes = 0;
      }
    }
    wake();
  }

  /**
   * Starts writing the queue if it is ready; otherwise at the latest MAX_GROUP_DELAY_MS after now,
   * so that a function saving small pages quickly has them written together (one transaction, one
   * commit) while one saving now and then still has its records written within moments.
   */
  function pump(): void {
    if (writing || failure || !queued.length) return;
    if (!ready()) {
      timer ??= setTimeout(() => {
        timer = undefined;
        flushing++;
        pump();
        void writing?.finally(() => flushing--);
        if (!writing) flushing--;
      }, MAX_GROUP_DELAY_MS);
      return;
    }
    if (timer) clearTimeout(timer);
    timer = undefined;
    writing = drain().then(() => {
      writing = undefined;
      pump();
    });
  }

  /** Waits until every queued batch is written; throws the first write failure of the run. */
  async function flush(): Promise<void> {
    flushing++;
    try {
      pump();
      while (writing) {
        await writing;
        pump();
      }
    } finally {
      flushing--;
    }
    if (failure) throw failure.error;
  }

  return {
    /** An empty batch of one model, encoded the way it is expected to be written. */
    async batch(model: string): Promise<EncodedBatch> {
      if (pool && !expectNew.has(model)) expectNew.set(model, !(await feedHasRecords(db, connectionPk, model)));
      return new EncodedBatch(pool && expectNew.get(model) ? 'copy' : 'arrays', connectionPk, model);
    },

    /** Queues a batch (where an id was added twice, the last one wins) and returns, once there is room. */
    async save(batch: EncodedBatch): Promise<void> {
      if (batch.hasRepeatedIds) batch = EncodedBatch.of(batch.encoding, connectionPk, batch.model, lastOfEachId(batch.records()));
      const full = () => queuedRecords + batch.count > MAX_QUEUED_RECORDS || queuedBytes + batch.size > MAX_QUEUED_BYTES;
      while (!failure && queued.length && full()) {
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
      if (failure) throw failure.error;
      if (!batch.count) return;
      queued.push(batch);
      queuedRecords += batch.count;
      queuedBytes += batch.size;
      pump();
    },

    /** Marks records deleted, after every batch queued before. */
    async delete(model: string, ids: readonly string[]): Promise<void> {
      await flush();
      const c = await db.transaction(async (tx) => {
        const deleted = await deleteRecords(tx, connectionPk, model, ids);
        if (deleted) await tx.execute(opts.onCounts({ added: 0, updated: 0, deleted }));
        return { added: 0, updated: 0, deleted };
      });
      tally(model, c);
    },

    flush,

    /** What this writer wrote of a model (complete after `flush`). */
    counts(model: string): WriteCounts {
      return { ...(counts.get(model) ?? { added: 0, updated: 0, deleted: 0 }) };
    },
  };
}

/**
 * The end of a successful full sync, in the run's closing transaction: every record of the feed
 * the run did not see is marked deleted. Returns how many were.
 */
export const deleteUnseenRecords = deleteRecordsNotSeen;

/** The start of a full sync's attempt: returns the cursor after which its writes count as seen. */
export const startSeen = startSeenIds;

/** After a full sync's run ended: its staged ids are dropped. */
export const clearSeen = clearSeenIds;
