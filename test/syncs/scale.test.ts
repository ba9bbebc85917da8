import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { listRunnableSyncIds, runnableSyncsQuery } from '../../src/syncs/repository.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

// An integration with more syncs than any fixed cap: 20,000 connections made with SQL (the API
// would take minutes), each with the integration's one sync. Integration-wide operations act on
// all of them, status pages through all of them, and the scheduler's due query reads its indexes.

const KEY = 'gh';
const SEEDED = 20_000;
const TOTAL = SEEDED + 1; // and the connection made through the API

let t: TestApp;
const db = () => t.db.database.db;
const count = async (where: ReturnType<typeof sql>) =>
  (await queryRows<{ n: number }>(db(), sql`SELECT count(*)::int AS n FROM syncs WHERE ${where}`))[0]!.n;

beforeAll(async () => {
  t = await createTestApp();
  const i = await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: KEY, provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' },
  });
  expect(i.statusCode, i.body).toBe(200);
  const c = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { connection_id: 'acme', provider_config_key: KEY, credentials: { type: 'OAUTH2', access_token: 'gho_x' } },
  });
  expect(c.statusCode, c.body).toBe(200);
  const e = await t.call({ method: 'POST', url: `/integration/${KEY}/functions`, payload: { name: 'issues', auto_start: false } });
  expect(e.statusCode, e.body).toBe(201);
  const [f] = await queryRows<{ id: string; integration_id: string; environment_id: string }>(
    db(),
    sql`SELECT id, integration_id, environment_id FROM function_configs WHERE name = 'issues'`,
  );
  await db().execute(sql`
    INSERT INTO connections (environment_id, integration_id, connection_id, credentials_type)
    SELECT ${f!.environment_id}, ${f!.integration_id}, 'seed-' || g, 'API_KEY' FROM generate_series(1, ${SEEDED}) g`);
  // Scheduled within the next day, none due yet.
  await db().execute(sql`
    INSERT INTO syncs (environment_id, connection_pk, function_config_id, name, paused, next_run_at)
    SELECT c.environment_id, c.id, ${f!.id}, 'issues', false, now() + make_interval(secs => 60 + c.id % 86400)
      FROM connections c WHERE c.integration_id = ${f!.integration_id} AND c.connection_id LIKE 'seed-%'`);
  await db().execute(sql`ANALYZE syncs`);
});
afterAll(async () => {
  await t?.close();
});

describe('integration-wide sync control', () => {
  it('POST /sync/pause and /sync/start act on every sync of the integration, however many', async () => {
    const paused = await t.call({ method: 'POST', url: '/sync/pause', payload: { provider_config_key: KEY, syncs: ['issues'] } });
    expect(paused.statusCode, paused.body).toBe(200);
    expect(paused.json()).toEqual({ success: true, count: TOTAL });
    expect(await count(sql`NOT paused`)).toBe(0);

    const started = await t.call({ method: 'POST', url: '/sync/start', payload: { provider_config_key: KEY, syncs: ['issues'] } });
    expect(started.json()).toEqual({ success: true, count: TOTAL });
    expect(await count(sql`paused`)).toBe(0);
    // The sync paused before it was ever scheduled (auto_start false) is due now; the others keep their time.
    expect(await count(sql`next_run_at <= now()`)).toBe(1);
  });

  it('another environment pausing an integration of the same name changes nothing here', async () => {
    const other = await t.newEnvironment('other');
    const i = await t.call({
      method: 'POST',
      url: '/integration',
      key: other.key,
      payload: { provider_config_key: KEY, provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' },
    });
    expect(i.statusCode, i.body).toBe(200);
    const r = await t.call({
      method: 'POST',
      url: '/sync/pause',
      key: other.key,
      payload: { provider_config_key: KEY, syncs: ['issues'] },
    });
    expect(r.json()).toEqual({ success: true, count: 0 });
    expect(await count(sql`paused`)).toBe(0);
  });
});

describe('GET /sync/status paged', () => {
  it('pages through every sync exactly once with limit and next_cursor', async () => {
    const seen = new Set<string>();
    let cursor: string | null = null;
    let pages = 0;
    do {
      const r = await t.call({
        method: 'GET',
        url: `/sync/status?provider_config_key=${KEY}&syncs=*&limit=1000${cursor ? `&cursor=${cursor}` : ''}`,
      });
      expect(r.statusCode, r.body).toBe(200);
      const body = r.json<{
        syncs: { id: string; connection_id: string; recordCount: Record<string, number> }[];
        next_cursor: string | null;
      }>();
      expect(body.syncs.length).toBeLessThanOrEqual(1000);
      for (const s of body.syncs) seen.add(s.id);
      expect(body.syncs[0]!.recordCount).toEqual({ GithubIssue: 0 });
      cursor = body.next_cursor;
      pages++;
    } while (cursor);
    expect(seen.size).toBe(TOTAL);
    expect(pages).toBe(Math.ceil(TOTAL / 1000));
  });

  it('answers one connection on one page, without a cursor', async () => {
    const r = await t.call({ method: 'GET', url: `/sync/status?provider_config_key=${KEY}&syncs=issues&connection_id=seed-7` });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ syncs: [{ connection_id: 'seed-7', name: 'issues' }], next_cursor: null });
  });

  it('refuses a limit out of bounds and a cursor of another query, naming the field', async () => {
    for (const limit of [0, 1001]) {
      const r = await t.call({ method: 'GET', url: `/sync/status?provider_config_key=${KEY}&syncs=*&limit=${limit}` });
      expect(r.statusCode).toBe(400);
      expect(r.json().message).toMatch(/limit/);
    }
    const first = await t.call({ method: 'GET', url: `/sync/status?provider_config_key=${KEY}&syncs=*&limit=2` });
    const cursor = first.json().next_cursor as string;
    expect(cursor).toEqual(expect.any(String));
    const next = await t.call({ method: 'GET', url: `/sync/status?provider_config_key=${KEY}&syncs=*&limit=2&cursor=${cursor}` });
    expect(next.statusCode).toBe(200);
    expect(next.json().syncs.map((s: { id: string }) => s.id)).not.toContain(first.json().syncs[1].id);
    const other = await t.call({ method: 'GET', url: `/sync/status?provider_config_key=${KEY}&syncs=issues&limit=2&cursor=${cursor}` });
    expect(other.statusCode).toBe(400);
    expect(other.json()).toMatchObject({ error: 'invalid_request', message: expect.stringMatching(/^cursor: /) });
  });
});

/** Every plan node (the node and all below it). */
function nodes(plan: Record<string, unknown>): Record<string, unknown>[] {
  return [plan, ...((plan.Plans as Record<string, unknown>[] | undefined) ?? []).flatMap(nodes)];
}

describe('scheduler', () => {
  it('finds due syncs and expired leases, not paused, running or future ones', async () => {
    const ids = async (where: ReturnType<typeof sql>) =>
      (await queryRows<{ id: string }>(db(), sql`SELECT id FROM syncs WHERE ${where} ORDER BY id`)).map((r) => Number(r.id));
    await db().execute(sql`UPDATE syncs SET next_run_at = now() + interval '1 hour'`);
    const [due, pausedDue, running, expired, pausedExpired] = await Promise.all(
      ['seed-1', 'seed-2', 'seed-3', 'seed-4', 'seed-5'].map((c) =>
        ids(sql`connection_pk = (SELECT id FROM connections WHERE connection_id = ${c})`),
      ),
    );
    await db().execute(sql`UPDATE syncs SET next_run_at = now() - interval '1 minute' WHERE id IN (${due![0]}, ${pausedDue![0]})`);
    await db().execute(sql`UPDATE syncs SET paused = true WHERE id IN (${pausedDue![0]}, ${pausedExpired![0]})`);
    await db().execute(
      sql`UPDATE syncs SET running_run_id = gen_random_uuid(), next_run_at = now() - interval '1 minute',
                           lease_expires_at = CASE WHEN id = ${running![0]} THEN now() + interval '1 minute' ELSE now() - interval '1 second' END
           WHERE id IN (${running![0]}, ${expired![0]}, ${pausedExpired![0]})`,
    );
    expect((await listRunnableSyncIds(db(), 1000)).sort((a, b) => a - b)).toEqual([due![0]!, expired![0]!].sort((a, b) => a - b));
  });

  it('reads the due syncs from their partial index in order, never scanning the syncs table', async () => {
    // A backlog (the workers were down for a while): half the syncs due, a thousand leases expired.
    await db().execute(sql`UPDATE syncs SET next_run_at = now() - make_interval(secs => id % 600) WHERE id % 2 = 0`);
    await db().execute(
      sql`UPDATE syncs SET running_run_id = gen_random_uuid(), lease_expires_at = now() - make_interval(secs => id % 60) WHERE id % 20 = 1`,
    );
    await db().execute(sql`ANALYZE syncs`);
    const [row] = await queryRows<{ 'QUERY PLAN': [{ Plan: Record<string, unknown> }] | string }>(
      db(),
      sql`EXPLAIN (FORMAT JSON) ${runnableSyncsQuery(1000)}`,
    );
    const raw = row!['QUERY PLAN'];
    const plan = (typeof raw === 'string' ? JSON.parse(raw) : raw) as [{ Plan: Record<string, unknown> }];
    const all = nodes(plan[0].Plan);
    expect(all.filter((n) => n['Relation Name'] === 'syncs').map((n) => n['Node Type'])).not.toContain('Seq Scan');
    expect(all.flatMap((n) => (n['Index Name'] ? [n['Index Name']] : [])).sort()).toEqual(['syncs_due_idx', 'syncs_lease_idx']);
    // The due syncs (thousands here) are read in order and the read stops at the limit: no sort of
    // all of them, as the former query did. The expired leases (few, normally) may be read either way.
    expect(all.find((n) => n['Index Name'] === 'syncs_due_idx')?.['Node Type']).toBe('Index Scan');
    // Up to the limit of each: the due ones fill theirs, the expired leases (about a thousand) theirs.
    const runnable = await listRunnableSyncIds(db(), 1000);
    expect(runnable.length).toBeGreaterThan(1900);
    expect(runnable.length).toBeLessThanOrEqual(2000);
  });
});
