import { type SQL, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { deleteExpired, expiredEventsBatch, expiredRunsBatch } from '../../src/runs/repository.js';
import { stalePendingQuery } from '../../src/webhooks/repository.js';
import { createTestDatabase, type TestDatabase } from '../helpers/app.js';

/**
 * Retention and the sweep of lost webhook deliveries run on tables that grow by millions of rows a
 * day: their queries must be range scans of their partial indexes, never scans of the table.
 * A few thousand rows are enough for the planner to choose the same plan it chooses at scale.
 */
let t: TestDatabase;
const q = <T = Record<string, unknown>>(query: SQL) => queryRows<T>(t.database.db, query);
const plan = async (query: SQL) => (await q<{ 'QUERY PLAN': string }>(sql`EXPLAIN ${query}`)).map((r) => r['QUERY PLAN']).join('\n');

beforeAll(async () => {
  t = await createTestDatabase();
  await q(sql`INSERT INTO accounts (id, name) VALUES ('00000000-0000-4000-8000-000000000001', 'a')`);
  await q(sql`INSERT INTO environments (id, account_id, name, secret_key_hash, secret_key_hint)
              VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001', 'e', 'h', 'k')`);
  const env = sql`'00000000-0000-4000-8000-000000000002'::uuid`;
  await q(sql`INSERT INTO integrations (environment_id, unique_key, provider) VALUES (${env}, 'gh', 'github')`);
  await q(sql`INSERT INTO connections (environment_id, integration_id, connection_id, credentials_type)
              SELECT ${env}, id, 'c1', 'OAUTH2' FROM integrations`);
  // 4,000 recent finished runs with a log line each, and 5 past the retention.
  await q(sql`INSERT INTO runs (environment_id, connection_pk, type, function_name, trigger, status, created_at)
              SELECT ${env}, (SELECT id FROM connections), 'sync', 'issues', 'schedule', 'success', now() - (g || ' minutes')::interval
                FROM generate_series(1, 4000) g`);
  await q(sql`INSERT INTO runs (environment_id, connection_pk, type, function_name, trigger, status, created_at)
              SELECT ${env}, (SELECT id FROM connections), 'sync', 'issues', 'schedule', 'error', now() - interval '40 days'
                FROM generate_series(1, 5)`);
  await q(sql`INSERT INTO run_logs (run_id, level, message) SELECT id, 'info', 'x' FROM runs`);
  // 4,000 recent dispatched events, 3 old ones, and one old event whose delivery is still pending.
  await q(sql`INSERT INTO events (environment_id, type, operation, success, created_at, delivered_at)
              SELECT ${env}, 'sync', 'finished', true, now() - (g || ' minutes')::interval, now()
                FROM generate_series(1, 4000) g`);
  await q(sql`INSERT INTO events (environment_id, type, operation, success, created_at, delivered_at)
              SELECT ${env}, 'sync', 'finished', true, now() - interval '40 days', now() FROM generate_series(1, 4)`);
  await q(sql`INSERT INTO webhook_deliveries (id, environment_id, event_id, url, status, updated_at)
              SELECT gen_random_uuid(), ${env}, id, 'https://example.com/hook',
                     CASE WHEN id = (SELECT max(id) FROM events) THEN 'pending' ELSE 'delivered' END, now() - interval '1 hour'
                FROM events`);
  await q(sql`ANALYZE`);
});
afterAll(async () => t?.drop());

describe('retention', () => {
  const cutoff = new Date(Date.now() - 30 * 86_400_000).toISOString();

  it('finds each batch of expired runs and events through their partial indexes on created_at', async () => {
    const runs = await plan(expiredRunsBatch(cutoff, 2000));
    expect(runs).toContain('runs_finished_created_idx');
    expect(runs).not.toMatch(/Seq Scan on runs/);
    const events = await plan(expiredEventsBatch(cutoff, 2000));
    expect(events).toContain('events_dispatched_created_idx');
    expect(events).not.toMatch(/Seq Scan on events/);
  });

  it('deletes batch after batch until nothing past the cutoff is left, logs with their runs', async () => {
    const removed = await deleteExpired(t.database.db, 30, { batchSize: 2 });
    // The old event with a pending delivery stays until its delivery ends.
    expect(removed).toEqual({ runs: 5, events: 3, done: true });
    const [left] = await q<{ runs: number; logs: number; events: number }>(
      sql`SELECT (SELECT count(*) FROM runs)::int AS runs, (SELECT count(*) FROM run_logs)::int AS logs, (SELECT count(*) FROM events)::int AS events`,
    );
    expect(left).toEqual({ runs: 4000, logs: 4000, events: 4001 });
    expect(await deleteExpired(t.database.db, 30, { batchSize: 2 })).toEqual({ runs: 0, events: 0, done: true });
  });

  it('stops at its time budget and says so; the next pass goes on', async () => {
    await q(sql`UPDATE runs SET created_at = now() - interval '40 days' WHERE id IN (SELECT id FROM runs ORDER BY created_at LIMIT 10)`);
    const first = await deleteExpired(t.database.db, 30, { batchSize: 2, budgetMs: 0 });
    expect(first).toEqual({ runs: 0, events: 0, done: false });
    expect(await deleteExpired(t.database.db, 30, { batchSize: 2 })).toMatchObject({ runs: 10, done: true });
  });
});

describe('the sweep of lost webhook deliveries', () => {
  it('reads pending deliveries through their partial index, not the delivery log', async () => {
    const p = await plan(stalePendingQuery(t.database.db, new Date()).getSQL());
    expect(p).toContain('webhook_deliveries_pending_idx');
    expect(p).not.toMatch(/Seq Scan on webhook_deliveries/);
  });
});
