import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { queryRows } from '../../src/db/client.js';
import { defineSync, type SyncContext } from '../../src/functions/define.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

// batchSave through the real sync runner (called directly, no queue): large batches are written in
// chunks inside one transaction, which must not change what is stored or counted.

let plan: (ctx: SyncContext) => Promise<void> = async () => {};
const store = defineSync({
  name: 'store-test',
  description: 'test: saves whatever the current plan says',
  models: { Item: z.object({ id: z.string(), name: z.string(), n: z.number().int() }) },
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
  await t.call({ method: 'POST', url: '/sync/trigger', payload: { provider_config_key: 'gh', connection_id: 'acme', syncs: ['store-test'] } });
  expect(await t.services.syncRunner.run(syncId)).toBe('ran');
  const [run] = await queryRows<{ status: string; added: number; updated: number; deleted: number; error: { message: string } | null }>(
    t.db.database.db,
    sql`SELECT status, added, updated, deleted, error FROM runs WHERE sync_id = ${syncId} ORDER BY created_at DESC LIMIT 1`,
  );
  return run!;
}

const rows = () =>
  queryRows<{ external_id: string; data: string; cursor: string; last_action: string }>(
    t.db.database.db,
    sql`SELECT external_id, data::text AS data, cursor::text AS cursor, last_action FROM records WHERE connection_pk = ${connectionPk} AND model = 'Item' ORDER BY cursor`,
  );

beforeAll(async () => {
  t = await createTestApp({ extraFunctions: { github: [store] } });
  const r = await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' } });
  expect(r.statusCode, r.body).toBe(200);
  const c = await t.call({ method: 'POST', url: '/connection', payload: { connection_id: 'acme', provider_config_key: 'gh', credentials: { type: 'OAUTH2', access_token: 'gho_x' } } });
  expect(c.statusCode, c.body).toBe(200);
  const e = await t.call({ method: 'POST', url: '/integration/gh/functions', payload: { name: 'store-test' } });
  expect(e.statusCode, e.body).toBe(201);
  const [s] = await queryRows<{ id: string; connection_pk: string }>(t.db.database.db, sql`SELECT id, connection_pk FROM syncs WHERE name = 'store-test'`);
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

  it('counts an id repeated across the chunks of one batch once, and keeps its last version', async () => {
    const before = await rows();
    // item-5 (changed) and item-800 (new) appear in the first chunk and again at the end of the batch.
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

  it('writes nothing of a batch whose invalid record is in a later chunk', async () => {
    const before = await rows();
    const batch: unknown[] = range(1000, 1600);
    batch[550] = { id: 'item-1550', name: 42, n: 1 };
    const run = await runOnce(async (ctx) => {
      await ctx.batchSave('Item', range(2000, 2010));
      await ctx.batchSave('Item', batch as ReturnType<typeof item>[]);
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
