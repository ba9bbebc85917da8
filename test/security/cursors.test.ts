/**
 * Cursors are opaque and bound to their tenant and query: they carry no readable sequence value,
 * a cursor of another environment, connection, model or listing is a 400 naming `cursor`, forged
 * ones are a 400 (never a 500), and cursors made before a key rotation keep working. The
 * Nango-compatible connection `id` is not the internal, server-wide row number.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { queryRows } from '../../src/db/client.js';
import { defineSync } from '../../src/functions/define.js';
import { createVault } from '../../src/lib/vault.js';
import { createTestApp, type TestApp, type TestEnvironment } from '../helpers/app.js';
import type { RecordOut } from '../helpers/syncs.js';

const store = defineSync({
  name: 'cursor-test',
  description: 'test: saves five items of two models',
  models: {
    Item: z.object({ id: z.string(), n: z.number().int() }),
    Other: z.object({ id: z.string(), n: z.number().int() }),
  },
  frequency: '1d',
  syncType: 'incremental',
  autoStart: true,
  exec: async (ctx) => {
    const items = Array.from({ length: 5 }, (_, n) => ({ id: `item-${n}`, n }));
    await ctx.batchSave('Item', items);
    await ctx.batchSave('Other', items);
  },
});

const oldKey = { id: 'old', key: randomBytes(32) };
let t: TestApp;
let A: TestEnvironment;
let B: TestEnvironment;

async function setUp(env: TestEnvironment) {
  const call = (o: Parameters<TestApp['call']>[0]) => t.call({ ...o, key: env.key });
  expect(
    (
      await call({
        method: 'POST',
        url: '/integration',
        payload: { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' },
      })
    ).statusCode,
  ).toBe(200);
  for (const id of ['acme', 'beta', 'gamma']) {
    const c = await call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: id, provider_config_key: 'gh', credentials: { type: 'OAUTH2', access_token: 'gho_x' } },
    });
    expect(c.statusCode, c.body).toBe(200);
  }
  expect((await call({ method: 'POST', url: '/integration/gh/functions', payload: { name: 'cursor-test' } })).statusCode).toBe(201);
  const syncs = await queryRows<{ id: string }>(
    t.db.database.db,
    sql`SELECT id FROM syncs WHERE environment_id = ${env.id} AND name = 'cursor-test'`,
  );
  for (const s of syncs) expect(await t.services.syncRunner.run(Number(s.id))).toBe('ran');
}

const records = (env: TestEnvironment, query: string, connectionId = 'acme') =>
  t.call({
    method: 'GET',
    url: `/records?${query}`,
    key: env.key,
    headers: { 'connection-id': connectionId, 'provider-config-key': 'gh' },
  });

const refusesCursor = (res: { statusCode: number; json(): unknown }) => {
  expect(res.statusCode).toBe(400);
  expect(res.json()).toMatchObject({ error: 'invalid_request', details: [{ field: 'cursor' }] });
};

beforeAll(async () => {
  t = await createTestApp({ extraFunctions: { github: [store] }, vault: createVault([oldKey]) });
  A = t.env;
  B = await t.newEnvironment();
  await setUp(A);
  await setUp(B);
});
afterAll(async () => t?.close());

describe('records cursors', () => {
  it('page the feed, reveal no sequence value, and are refused for another tenant, connection or model', async () => {
    const first = await records(A, 'model=Item&limit=2');
    expect(first.statusCode, first.body).toBe(200);
    const page = first.json<{ records: RecordOut[]; next_cursor: string }>();
    const [seq] = await queryRows<{ max: string }>(t.db.database.db, sql`SELECT max(cursor)::text AS max FROM records`);
    for (const cursor of [page.next_cursor, ...page.records.map((r) => r._nango_metadata.cursor)]) {
      expect(cursor).toMatch(/^old\.[A-Za-z0-9_-]{22}$/);
      // Not the old form (base64url of a JSON tuple of sequence values): 16 bytes that are no JSON.
      expect(() => JSON.parse(Buffer.from(cursor.slice(4), 'base64url').toString('utf8')) as unknown).toThrow();
      expect(cursor).not.toBe(`old.${Buffer.from(JSON.stringify([Number(seq!.max)])).toString('base64url')}`);
    }

    const second = await records(A, `model=Item&limit=2&cursor=${page.next_cursor}`);
    expect(second.statusCode).toBe(200);
    expect(second.json().records.map((r: RecordOut) => r.id)).toEqual(['item-2', 'item-3']);
    const fromRecord = await records(A, `model=Item&limit=10&cursor=${page.records[0]!._nango_metadata.cursor}`);
    expect(fromRecord.json().records.map((r: RecordOut) => r.id)).toEqual(['item-1', 'item-2', 'item-3', 'item-4']);

    // The same feed (integration key, connection id, model) in environment B: refused.
    refusesCursor(await records(B, `model=Item&cursor=${page.next_cursor}`));
    refusesCursor(await records(A, `model=Item&cursor=${page.next_cursor}`, 'beta'));
    refusesCursor(await records(A, `model=Other&cursor=${page.next_cursor}`));
    // A cursor of the old, readable form, and garbage.
    const legacy = Buffer.from(JSON.stringify([Number(seq!.max), 'abcdefghij'])).toString('base64url');
    refusesCursor(await records(A, `model=Item&cursor=${legacy}`));
    refusesCursor(await records(A, `model=Item&cursor=old.${'A'.repeat(22)}`));
    refusesCursor(await records(A, `model=Item&cursor=nokey.${page.next_cursor.slice(4)}`));
  });

  it('made with a key that was rotated out of first place still page', async () => {
    const page = (await records(A, 'model=Item&limit=2')).json<{ next_cursor: string }>();
    const rotated = await createTestApp({
      db: t.db,
      vault: createVault([{ id: 'new', key: randomBytes(32) }, oldKey]),
      extraFunctions: { github: [store] },
    });
    try {
      const call = (cursor: string) =>
        rotated.app.inject({
          method: 'GET',
          url: `/records?model=Item&limit=2&cursor=${cursor}`,
          headers: { authorization: `Bearer ${A.key}`, 'connection-id': 'acme', 'provider-config-key': 'gh' },
        });
      const res = await call(page.next_cursor);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().records.map((r: RecordOut) => r.id)).toEqual(['item-2', 'item-3']);
      expect(res.json().next_cursor).toMatch(/^new\./);
      expect((await call(res.json().next_cursor)).json().records.map((r: RecordOut) => r.id)).toEqual(['item-4']);
    } finally {
      await rotated.close();
    }
  });

  it.each(['0000-01-01T00:00:00Z', '0001-01-01T00:00:00+01:00', '9999-12-31T23:59:59-14:00', '2024-02-30T00:00:00Z', 'yesterday'])(
    'refuses modified_after=%s naming the field',
    async (value) => {
      const res = await records(A, `model=Item&modified_after=${encodeURIComponent(value)}`);
      expect(res.statusCode, res.body).toBe(400);
      expect(res.json().details).toEqual([expect.objectContaining({ field: 'modified_after' })]);
    },
  );

  it('accepts modified_after at the ends of the range', async () => {
    expect((await records(A, `model=Item&modified_after=${encodeURIComponent('0001-01-01T00:00:00Z')}`)).json().records).toHaveLength(5);
    expect((await records(A, `model=Item&modified_after=${encodeURIComponent('9999-12-31T23:59:59Z')}`)).json().records).toHaveLength(0);
  });
});

describe('connection list cursors and ids', () => {
  it('page connections and are refused for another tenant or listing', async () => {
    for (const url of ['/connection?limit=1', '/connections?limit=1']) {
      const first = await t.call({ method: 'GET', url, key: A.key });
      expect(first.statusCode, first.body).toBe(200);
      const cursor = first.json().next_cursor as string;
      expect(cursor).toMatch(/^old\./);
      const second = await t.call({ method: 'GET', url: `${url}&cursor=${cursor}`, key: A.key });
      expect(second.statusCode).toBe(200);
      const next = second.json().connections[0];
      expect(url.startsWith('/connections') ? next.connection_id : next.id).toBe('beta');
      refusesCursor(await t.call({ method: 'GET', url: `${url}&cursor=${cursor}`, key: B.key }));
    }
    const cursor = (await t.call({ method: 'GET', url: '/connection?limit=1' })).json().next_cursor as string;
    refusesCursor(await t.call({ method: 'GET', url: `/connection?limit=1&provider_config_key=gh&cursor=${cursor}` }));
    refusesCursor(await t.call({ method: 'GET', url: `/connection?limit=1&cursor=${Buffer.from('[1]').toString('base64url')}` }));
  });

  it('shows a stable Nango id that is not the server-wide row number', async () => {
    const internal = await queryRows<{ id: string; public_id: string }>(
      t.db.database.db,
      sql`SELECT id::text AS id, public_id::text AS public_id FROM connections WHERE environment_id = ${A.id} ORDER BY id`,
    );
    const list = (await t.call({ method: 'GET', url: '/connections' })).json().connections as { id: number; connection_id: string }[];
    expect(list).toHaveLength(3);
    const ids = list.map((c) => c.id);
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) {
      expect(Number.isSafeInteger(id)).toBe(true);
      expect(internal.map((r) => Number(r.id))).not.toContain(id);
    }
    expect(ids).toEqual(internal.map((r) => Number(r.public_id)));
    const one = await t.call({ method: 'GET', url: '/connections/acme?provider_config_key=gh' });
    expect(one.json().id).toBe(ids[0]);
    expect((await t.call({ method: 'GET', url: '/connections' })).json().connections.map((c: { id: number }) => c.id)).toEqual(ids);
  });
});

describe('webhook deliveries cursors', () => {
  it.each([
    ['a forged date', ['not-a-date', 'x']],
    ['a bad uuid', ['2026-01-01T00:00:00.000Z', 'not-a-uuid']],
    ['the wrong shape', [1]],
  ])('refuses %s with a 400 naming cursor', async (_what, values) => {
    const cursor = Buffer.from(JSON.stringify(values)).toString('base64url');
    refusesCursor(await t.call({ method: 'GET', url: `/environment/webhooks/deliveries?cursor=${cursor}` }));
    refusesCursor(await t.call({ method: 'GET', url: `/environment/webhooks/deliveries?cursor=old.${cursor}` }));
  });
});
