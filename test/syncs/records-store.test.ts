import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { queryRows } from '../../src/db/client.js';
import { defineSync, type SyncContext } from '../../src/functions/define.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { allRecords, type RecordOut, recordsPage } from '../helpers/syncs.js';

// batchSave through the real sync runner (called directly, no queue). Batches are written behind the
// function (queued batches together, the first records of a feed with COPY on Postgres, falling back
// to an upsert when an id exists after all), which must never change what is stored or counted.

let plan: (ctx: SyncContext) => Promise<void> = async () => {};
const store = defineSync({
  name: 'store-test',
  description: 'test: saves whatever the current plan says',
  models: {
    Item: z.object({ id: z.string(), name: z.string(), n: z.number().int() }),
    Page: z.object({ id: z.string(), name: z.string(), n: z.number().int() }),
    Guarded: z.object({ id: z.string(), name: z.string(), n: z.number().int() }),
    Loose: z.object({ id: z.unknown().optional(), name: z.string() }),
    Feed: z.object({ id: z.string(), name: z.string(), n: z.number().int() }),
  },
  frequency: '1d',
  syncType: 'incremental',
  autoStart: true,
  exec: (ctx) => plan(ctx as SyncContext),
});

const item = (i: number, version = 0) => ({ id: `item-${i}`, name: `Item ${i}${version ? ` v${version}` : ''}`, n: i });
const range = (from: number, to: number, version = 0) => Array.from({ length: to - from }, (_, k) => item(from + k, version));

let t: TestApp;
let syncId: number;
let connectionPk: number;

async function runOnce(p: (ctx: SyncContext) => Promise<void>) {
  plan = p;
  await t.call({
    method: 'POST',
    url: '/sync/trigger',
    payload: { provider_config_key: 'gh', connection_id: 'acme', syncs: ['store-test'] },
  });
  expect(await t.services.syncRunner.run(syncId)).toBe('ran');
  const [run] = await queryRows<{ status: string; added: number; updated: number; deleted: number; error: { message: string } | null }>(
    t.db.database.db,
    sql`SELECT status, added, updated, deleted, error FROM runs WHERE sync_id = ${syncId} ORDER BY created_at DESC LIMIT 1`,
  );
  return run!;
}

const rows = (model = 'Item') =>
  queryRows<{ external_id: string; data: string; cursor: string; last_action: string }>(
    t.db.database.db,
    sql`SELECT external_id, data::text AS data, cursor::text AS cursor, last_action FROM records WHERE connection_pk = ${connectionPk} AND model = ${model} ORDER BY cursor`,
  );

beforeAll(async () => {
  t = await createTestApp({ extraFunctions: { github: [store] } });
  const r = await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' },
  });
  expect(r.statusCode, r.body).toBe(200);
  const c = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { connection_id: 'acme', provider_config_key: 'gh', credentials: { type: 'OAUTH2', access_token: 'gho_x' } },
  });
  expect(c.statusCode, c.body).toBe(200);
  const e = await t.call({ method: 'POST', url: '/integration/gh/functions', payload: { name: 'store-test' } });
  expect(e.statusCode, e.body).toBe(201);
  const [s] = await queryRows<{ id: string; connection_pk: string }>(
    t.db.database.db,
    sql`SELECT id, connection_pk FROM syncs WHERE name = 'store-test'`,
  );
  syncId = Number(s!.id);
  connectionPk = Number(s!.connection_pk);
});
afterAll(async () => {
  await t?.close();
});

describe('batchSave of large batches', () => {
  it('stores and counts exactly, stores the JSON text verbatim, and rewrites nothing on an unchanged re-run', async () => {
    const first = await runOnce(async (ctx) => {
      await ctx.batchSave('Item', range(0, 600));
      await ctx.batchSave('Item', range(600, 700));
    });
    expect(first).toMatchObject({ status: 'success', added: 700, updated: 0 });
    const stored = await rows();
    expect(stored).toHaveLength(700);
    expect(stored[0]!.data).toBe(JSON.stringify(item(0)));
    expect(new Set(stored.map((r) => r.external_id)).size).toBe(700);

    const again = await runOnce(async (ctx) => {
      await ctx.batchSave('Item', range(0, 600));
      await ctx.batchSave('Item', range(600, 700));
    });
    expect(again).toMatchObject({ status: 'success', added: 0, updated: 0 });
    expect(await rows()).toEqual(stored);
  });

  it('counts an id repeated within one batch once, and keeps its last version', async () => {
    const before = await rows();
    // item-5 (changed) and item-800 (new) appear near the start of the batch and again at its end.
    const batch = range(0, 600);
    batch[5] = item(5, 1);
    batch[10] = item(800, 1);
    batch[300] = item(300, 1);
    batch.push(item(5, 2), item(800, 2));
    const run = await runOnce(async (ctx) => ctx.batchSave('Item', batch));
    expect(run).toMatchObject({ status: 'success', added: 1, updated: 2 });
    const after = await rows();
    expect(after).toHaveLength(701);
    const byId = new Map(after.map((r) => [r.external_id, r]));
    expect(byId.get('item-5')!.data).toBe(JSON.stringify(item(5, 2)));
    expect(byId.get('item-800')!.data).toBe(JSON.stringify(item(800, 2)));
    expect(byId.get('item-800')!.last_action).toBe('added');
    expect(byId.get('item-300')!.last_action).toBe('updated');
    // Unchanged records kept their cursor; changed ones moved to the end of the feed.
    const old = new Map(before.map((r) => [r.external_id, r.cursor]));
    expect(byId.get('item-6')!.cursor).toBe(old.get('item-6'));
    const max = Math.max(...before.map((r) => Number(r.cursor)));
    for (const id of ['item-5', 'item-300', 'item-800']) expect(Number(byId.get(id)!.cursor)).toBeGreaterThan(max);
  });

  it('writes nothing of a batch with an invalid record, wherever it is', async () => {
    const before = await rows();
    const batch: unknown[] = range(1000, 1600);
    batch[550] = { id: 'item-1550', name: 42, n: 1 };
    const run = await runOnce(async (ctx) => {
      await ctx.batchSave('Item', range(2000, 2010));
      await ctx.batchSave('Item', batch);
    });
    expect(run.status).toBe('error');
    expect(run.error?.message).toMatch(/^record 550 of Item does not match the model: name:/);
    // The earlier batch of the run is committed (and counted); the failed one left no row.
    expect(run).toMatchObject({ added: 10, updated: 0 });
    const after = await rows();
    expect(after).toHaveLength(before.length + 10);
    expect(after.filter((r) => /^item-1\d{3}$/.test(r.external_id))).toHaveLength(0);
  });
});

describe('the write path', () => {
  const page = (i: number, version = 0) => ({ id: `page-${i}`, name: `Page ${i}${version ? ` v${version}` : ''}`, n: i });
  const pages = (from: number, to: number) => Array.from({ length: to - from }, (_, k) => page(from + k));

  it('writes the first run of a feed exactly; an id seen again in a later batch is updated in place, not duplicated', async () => {
    const run = await runOnce(async (ctx) => {
      // Small batches saved back to back: they queue up while the first is written.
      for (let from = 0; from < 1000; from += 50) await ctx.batchSave('Page', pages(from, from + 50));
      await ctx.batchSave('Page', [...pages(1000, 1200), page(250, 1)]);
      await ctx.batchSave('Page', [page(1200), page(999, 1), page(1201)]);
      await ctx.batchSave('Page', pages(1202, 1300));
    });
    expect(run).toMatchObject({ status: 'success', added: 1300, updated: 2, deleted: 0 });
    const stored = await rows('Page');
    expect(stored).toHaveLength(1300);
    expect(new Set(stored.map((r) => r.external_id)).size).toBe(1300);
    const byId = new Map(stored.map((r) => [r.external_id, r]));
    expect(byId.get('page-0')).toMatchObject({ data: JSON.stringify(page(0)), last_action: 'added' });
    expect(byId.get('page-250')).toMatchObject({ data: JSON.stringify(page(250, 1)), last_action: 'updated' });
    expect(byId.get('page-999')).toMatchObject({ data: JSON.stringify(page(999, 1)), last_action: 'updated' });
    // Cursors follow the order of the saves: the updates moved past every record saved before them.
    const cursor = (id: string) => Number(byId.get(id)!.cursor);
    expect(cursor('page-250')).toBeGreaterThan(cursor('page-998'));
    expect(cursor('page-999')).toBeGreaterThan(cursor('page-1199'));
    expect(cursor('page-1299')).toBeGreaterThan(cursor('page-999'));
    expect(new Set(stored.map((r) => r.cursor)).size).toBe(1300);

    // Run again unchanged: nothing is rewritten.
    const again = await runOnce(async (ctx) => {
      for (let from = 0; from < 1300; from += 100)
        await ctx.batchSave(
          'Page',
          pages(from, from + 100).map((p) => byIdVersion(p)),
        );
    });
    expect(again).toMatchObject({ status: 'success', added: 0, updated: 0 });
    expect(await rows('Page')).toEqual(stored);
    function byIdVersion(p: ReturnType<typeof page>) {
      return p.id === 'page-250' || p.id === 'page-999' ? page(p.n, 1) : p;
    }
  });

  it('a small batch is written within moments while the function goes on (not held back for more)', async () => {
    let seenDuringRun = -1;
    const run = await runOnce(async (ctx) => {
      await ctx.batchSave('Page', [page(5000), page(5001)]);
      // The function waits for something else (a slow provider page); its records are written meanwhile.
      const started = Date.now();
      while (Date.now() - started < 20_000) {
        const [row] = await queryRows<{ n: number }>(
          t.db.database.db,
          sql`SELECT count(*)::int AS n FROM records WHERE external_id IN ('page-5000', 'page-5001')`,
        );
        seenDuringRun = row!.n;
        if (seenDuringRun === 2) break;
        await new Promise((r) => setTimeout(r, 10));
      }
    });
    expect(run).toMatchObject({ status: 'success', added: 2 });
    expect(seenDuringRun).toBe(2);
  });

  it('refuses records whose id cannot be stored, naming the record', async () => {
    for (const [bad, message] of [
      [{ name: 'no id' }, /^record 1 of Loose has no id/],
      [{ id: '', name: 'empty' }, /^record 1 of Loose has no id/],
      [{ id: { nested: true }, name: 'object' }, /^record 1 of Loose has no id/],
      [{ id: 'a\u0000b', name: 'nul' }, /^record 1 of Loose has an id with a NUL character/],
      [{ id: 'x'.repeat(1025), name: 'long' }, /^record 1 of Loose has an id longer than 1024 bytes/],
    ] as const) {
      const run = await runOnce(async (ctx) => ctx.batchSave('Loose', [{ id: 7, name: 'fine' }, bad] as never[]));
      expect(run.status, JSON.stringify(bad).slice(0, 40)).toBe('error');
      expect(run.error?.message).toMatch(message);
    }
    expect(await rows('Loose')).toHaveLength(0);
  });

  it('a write the database refuses fails the next call and the run: the checkpoint after it is not saved, the batches before it stay', async () => {
    const db = t.db.database.db;
    await db.execute(sql`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.external_id = 'poison' THEN RAISE EXCEPTION 'record poison refused by a trigger'; END IF;
        RETURN NEW;
      END $$`);
    await db.execute(sql`CREATE TRIGGER refuse_poison BEFORE INSERT OR UPDATE ON records FOR EACH ROW EXECUTE FUNCTION refuse_poison()`);
    try {
      const guarded = (from: number, to: number) =>
        Array.from({ length: to - from }, (_, k) => ({ id: `g-${from + k}`, name: 'g', n: from + k }));
      let refusedAt: string | undefined;
      const run = await runOnce(async (ctx) => {
        await ctx.batchSave('Guarded', guarded(0, 100));
        await ctx.saveCheckpoint({ after: 100 });
        // Queued: batchSave returns before the database has seen the batch.
        await ctx.batchSave('Guarded', [...guarded(100, 150), { id: 'poison', name: 'p', n: -1 }]);
        try {
          await ctx.saveCheckpoint({ after: 151 });
        } catch (err) {
          refusedAt = 'saveCheckpoint';
          throw err;
        }
      });
      expect(refusedAt).toBe('saveCheckpoint');
      expect(run.status).toBe('error');
      expect(run.error?.message).toMatch(/record poison refused by a trigger/);
      // The database's message, not the statement with every record as a parameter.
      expect(run.error?.message).not.toMatch(/params|g-120/);
      expect(run).toMatchObject({ added: 100, updated: 0 });
      expect((await rows('Guarded')).map((r) => r.external_id)).toEqual(guarded(0, 100).map((g) => g.id));
      const [sync] = await queryRows<{ checkpoint: unknown }>(db, sql`SELECT checkpoint FROM syncs WHERE id = ${syncId}`);
      expect(sync!.checkpoint).toEqual({ after: 100 });
    } finally {
      await db.execute(sql`DROP TRIGGER refuse_poison ON records`);
      await db.execute(sql`DROP FUNCTION refuse_poison()`);
    }
  });
});

describe('GET /records', () => {
  const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;
  const page = async (query: string) => {
    const r = await recordsPage(t, 'gh', 'acme', query);
    expect(r.statusCode, r.body).toBe(200);
    return r.json<{ records: RecordOut[]; next_cursor: string | null }>();
  };

  it('returns each record as saved with its metadata; the cursor of any record resumes right after it', async () => {
    const names = ['plain', 'quote " and backslash \\', 'Zoë ✓ 😀', 'line\nbreak\ttab', '</script>\u2028'];
    const feed = Array.from({ length: 7 }, (_, i) => ({ id: `f-${i}`, name: names[i % names.length]!, n: i }));
    const run = await runOnce(async (ctx) => {
      await ctx.batchSave('Feed', feed);
      await ctx.batchDelete('Feed', [{ id: 'f-3' }]);
    });
    expect(run).toMatchObject({ status: 'success', added: 7, deleted: 1 });

    const first = await page('model=Feed&limit=3');
    expect(first.records.map((r) => r.id)).toEqual(['f-0', 'f-1', 'f-2']);
    expect(first.next_cursor).toBe(first.records[2]!._nango_metadata.cursor);
    for (const [i, r] of first.records.entries()) {
      const { _nango_metadata: meta, ...data } = r;
      expect(data).toEqual(feed[i]);
      expect(meta).toMatchObject({
        last_action: 'ADDED',
        deleted_at: null,
        first_seen_at: expect.stringMatching(ISO),
        last_modified_at: expect.stringMatching(ISO),
      });
      // Opaque (test/security/cursors.test.ts): the key id and one encrypted block.
      expect(meta.cursor).toMatch(/^test\.[A-Za-z0-9_-]{22}$/);
    }
    // Resuming from a record in the middle of a page starts right after it.
    const resumed = await page(`model=Feed&limit=2&cursor=${first.records[0]!._nango_metadata.cursor}`);
    expect(resumed.records.map((r) => r.id)).toEqual(['f-1', 'f-2']);

    // The deletion moved f-3 to the end of the feed.
    const all = await allRecords(t, 'gh', 'acme', 'Feed', { limit: 3 });
    expect(all.records.map((r) => r.id)).toEqual(['f-0', 'f-1', 'f-2', 'f-4', 'f-5', 'f-6', 'f-3']);
    expect(all.records.at(-1)!._nango_metadata).toMatchObject({ last_action: 'DELETED', deleted_at: expect.stringMatching(ISO) });
    const last = await page(`model=Feed&limit=3&cursor=${all.records[3]!._nango_metadata.cursor}`);
    expect(last.records.map((r) => r.id)).toEqual(['f-5', 'f-6', 'f-3']);
    expect(last.next_cursor).toBeNull();

    const deleted = await page('model=Feed&filter=deleted');
    expect(deleted.records.map((r) => r.id)).toEqual(['f-3']);
    expect(await page('model=Loose')).toEqual({ records: [], next_cursor: null });
  });
});
