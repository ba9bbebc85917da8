import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { queryRows } from '../../src/db/client.js';
import { defineSync, type SyncContext } from '../../src/functions/define.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

// Sync status shows live records per model from counters kept by every write (not a count(*) per
// sync at read time). Whatever a run does to the records, the counters must equal a fresh count.

let plan: (ctx: SyncContext) => Promise<void> = async () => {};
const counted = defineSync({
  name: 'count-test',
  description: 'test: does whatever the current plan says',
  models: {
    Item: z.object({ id: z.string(), v: z.number().int() }),
    Other: z.object({ id: z.string(), v: z.number().int() }),
  },
  frequency: '1d',
  syncType: 'incremental',
  autoStart: true,
  exec: (ctx) => plan(ctx as SyncContext),
});

const items = (from: number, to: number, v = 0) => Array.from({ length: to - from }, (_, k) => ({ id: `i-${from + k}`, v }));

let t: TestApp;
let syncId: number;
let connectionPk: number;

async function runOnce(p: (ctx: SyncContext) => Promise<void>, opts: { reset?: boolean } = {}) {
  plan = p;
  const r = await t.call({
    method: 'POST',
    url: '/sync/trigger',
    payload: { provider_config_key: 'gh', connection_id: 'acme', syncs: ['count-test'], reset: opts.reset ?? false },
  });
  expect(r.statusCode, r.body).toBe(200);
  expect(await t.services.syncRunner.run(syncId)).toBe('ran');
  const [run] = await queryRows<{ status: string; error: unknown }>(
    t.db.database.db,
    sql`SELECT status, error FROM runs WHERE sync_id = ${syncId} ORDER BY created_at DESC LIMIT 1`,
  );
  expect(run, JSON.stringify(run)).toMatchObject({ status: 'success' });
}

/** A fresh count of live records per model, as status counted them before the counters. */
async function fresh(): Promise<Record<string, number>> {
  const rows = await queryRows<{ model: string; n: number }>(
    t.db.database.db,
    sql`SELECT model, count(*)::int AS n FROM records WHERE connection_pk = ${connectionPk} AND deleted_at IS NULL GROUP BY model`,
  );
  return { Item: 0, Other: 0, ...Object.fromEntries(rows.map((r) => [r.model, r.n])) };
}

/** What both status routes show, checked against a fresh count; returns the per-model counts. */
async function expectCountsMatch(): Promise<Record<string, number>> {
  const expected = await fresh();
  const nango = await t.call({ method: 'GET', url: '/sync/status?provider_config_key=gh&syncs=count-test&connection_id=acme' });
  expect(nango.statusCode, nango.body).toBe(200);
  expect(nango.json().syncs[0].recordCount).toEqual(expected);
  const one = await t.call({ method: 'GET', url: '/sync/acme/count-test?provider_config_key=gh' });
  expect(one.json().records_count).toBe(expected.Item! + expected.Other!);
  return expected;
}

beforeAll(async () => {
  t = await createTestApp({ extraFunctions: { github: [counted] } });
  const i = await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' },
  });
  expect(i.statusCode, i.body).toBe(200);
  const c = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { connection_id: 'acme', provider_config_key: 'gh', credentials: { type: 'OAUTH2', access_token: 'gho_x' } },
  });
  expect(c.statusCode, c.body).toBe(200);
  const e = await t.call({ method: 'POST', url: '/integration/gh/functions', payload: { name: 'count-test' } });
  expect(e.statusCode, e.body).toBe(201);
  const [s] = await queryRows<{ id: string; connection_pk: string }>(
    t.db.database.db,
    sql`SELECT id, connection_pk FROM syncs WHERE name = 'count-test'`,
  );
  syncId = Number(s!.id);
  connectionPk = Number(s!.connection_pk);
});
afterAll(async () => {
  await t?.close();
});

describe('record counts kept with the records', () => {
  it('start at zero for every model', async () => {
    expect(await expectCountsMatch()).toEqual({ Item: 0, Other: 0 });
  });

  it('follow adds (first writes of a feed and later ones), updates and unchanged re-saves', async () => {
    await runOnce(async (ctx) => {
      await ctx.batchSave('Item', items(0, 1500));
      await ctx.batchSave('Other', items(0, 40));
    });
    expect(await expectCountsMatch()).toEqual({ Item: 1500, Other: 40 });
    await runOnce(async (ctx) => {
      // 500 changed, 500 unchanged, 200 new; one id twice in a batch.
      await ctx.batchSave('Item', [...items(0, 500, 1), ...items(500, 1000), ...items(1500, 1700), { id: 'i-1600', v: 9 }]);
    });
    expect(await expectCountsMatch()).toEqual({ Item: 1700, Other: 40 });
  });

  it('follow deletes, deletes of records already deleted or never stored, and records that come back', async () => {
    await runOnce(async (ctx) => {
      await ctx.batchDelete('Item', [...items(0, 100), { id: 'never-stored' }]);
      await ctx.batchDelete('Item', items(50, 150));
      await ctx.batchDelete('Other', items(0, 10));
    });
    expect(await expectCountsMatch()).toEqual({ Item: 1550, Other: 30 });
    await runOnce(async (ctx) => {
      // Ten deleted ones come back (added again), with ten live ones changed.
      await ctx.batchSave('Item', [...items(0, 10, 3), ...items(200, 210, 3)]);
    });
    expect(await expectCountsMatch()).toEqual({ Item: 1560, Other: 30 });
  });

  it('follow a reset: the full resync deletes what it did not see', async () => {
    await runOnce(
      async (ctx) => {
        await ctx.batchSave('Item', items(0, 300));
        await ctx.batchSave('Item', items(5000, 5050));
        await ctx.batchSave('Other', items(0, 5));
      },
      { reset: true },
    );
    expect(await expectCountsMatch()).toEqual({ Item: 350, Other: 5 });
  });

  it('follow a full resync that sees nothing, then the records coming back', async () => {
    await runOnce(async () => {}, { reset: true });
    expect(await expectCountsMatch()).toEqual({ Item: 0, Other: 0 });
    await runOnce(async (ctx) => {
      await ctx.batchSave('Item', items(0, 20));
      await ctx.batchSave('Other', items(100, 103));
    });
    expect(await expectCountsMatch()).toEqual({ Item: 20, Other: 3 });
  });

  it('go with the records when the sync is disabled, and start again from zero when it is enabled again', async () => {
    const d = await t.call({ method: 'DELETE', url: '/integration/gh/functions/count-test' });
    expect(d.statusCode, d.body).toBeLessThan(300);
    const left = await queryRows<{ n: number }>(
      t.db.database.db,
      sql`SELECT count(*)::int AS n FROM record_counts WHERE connection_pk = ${connectionPk} AND live <> 0`,
    );
    expect(left[0]!.n).toBe(0);
    const e = await t.call({ method: 'POST', url: '/integration/gh/functions', payload: { name: 'count-test' } });
    expect(e.statusCode, e.body).toBe(201);
    const [s] = await queryRows<{ id: string }>(t.db.database.db, sql`SELECT id FROM syncs WHERE name = 'count-test'`);
    syncId = Number(s!.id);
    expect(await expectCountsMatch()).toEqual({ Item: 0, Other: 0 });
    await runOnce(async (ctx) => ctx.batchSave('Item', items(0, 7)));
    expect(await expectCountsMatch()).toEqual({ Item: 7, Other: 0 });
  });
});
