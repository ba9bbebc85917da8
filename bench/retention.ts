/**
 * Retention throughput: how many expired runs (with their logs) `deleteExpired` deletes per second,
 * on a database of its own seeded with SQL, against the statement it replaced measured in the same
 * run (5,000 runs per statement, no index leading on created_at).
 *
 *   DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres npx tsx bench/retention.ts [--runs=2000000] [--fresh=500000] [--logs-every=4] [--seconds=20]
 */
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { openDatabase } from '../src/db/client.js';
import { deleteExpired } from '../src/runs/repository.js';

const arg = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const RUNS = arg('runs', 2_000_000);
const LOGS_EVERY = arg('logs-every', 4);
const SECONDS = arg('seconds', 20);
/** Unexpired runs, inserted first: the expired ones are not at the front of the table. */
const FRESH = arg('fresh', 500_000);
const server = process.env.DATABASE_URL;
if (!server) throw new Error('DATABASE_URL (a Postgres server) is required');
const NAME = 'terapi_bench_purge_retention';

async function admin(text: string) {
  const c = new pg.Client({ connectionString: server });
  await c.connect();
  await c.query(text);
  await c.end();
}

const url = new URL(server);
url.pathname = `/${NAME}`;
await admin(`DROP DATABASE IF EXISTS ${NAME} WITH (FORCE)`);
await admin(`CREATE DATABASE ${NAME}`);
const database = await openDatabase({ databaseUrl: url.toString(), poolSize: 4 });
try {
  await database.migrate();
  const db = database.db;
  const t0 = Date.now();
  await db.execute(sql`INSERT INTO accounts (id, name) VALUES ('00000000-0000-4000-8000-000000000001', 'bench')`);
  await db.execute(sql`INSERT INTO environments (id, account_id, name, secret_key_hash, secret_key_hint)
    VALUES ('00000000-0000-4000-8000-000000000002', '00000000-0000-4000-8000-000000000001', 'bench', 'h', 'k')`);
  await db.execute(
    sql`INSERT INTO integrations (environment_id, unique_key, provider) VALUES ('00000000-0000-4000-8000-000000000002', 'gh', 'github')`,
  );
  await db.execute(sql`INSERT INTO connections (environment_id, integration_id, connection_id, credentials_type)
    SELECT '00000000-0000-4000-8000-000000000002', (SELECT id FROM integrations), 'c' || g, 'OAUTH2' FROM generate_series(1, 1000) g`);
  await db.execute(sql`INSERT INTO runs (environment_id, connection_pk, type, function_name, trigger, status, created_at)
    SELECT '00000000-0000-4000-8000-000000000002', (SELECT min(id) FROM connections) + g % 1000, 'sync', 'issues', 'schedule', 'success',
           now() - (g * interval '29 days' / ${FRESH})
      FROM generate_series(1, ${FRESH}) g`);
  // Expired finished runs spread over 10 days past a 30-day retention, on 1,000 connections.
  await db.execute(sql`INSERT INTO runs (environment_id, connection_pk, type, function_name, trigger, status, created_at, started_at, ended_at)
    SELECT '00000000-0000-4000-8000-000000000002', (SELECT min(id) FROM connections) + g % 1000, 'sync', 'issues', 'schedule',
           CASE WHEN g % 10 = 0 THEN 'error' ELSE 'success' END, now() - interval '40 days' + (g * interval '10 days' / ${RUNS}), now(), now()
      FROM generate_series(1, ${RUNS}) g`);
  await db.execute(sql`INSERT INTO run_logs (run_id, level, message)
    SELECT id, 'info', 'sync finished' FROM (SELECT id, row_number() OVER () AS n FROM runs) r WHERE n % ${LOGS_EVERY} = 0`);
  await db.execute(sql`VACUUM ANALYZE runs`);
  await db.execute(sql`VACUUM ANALYZE run_logs`);
  const seeded = Date.now() - t0;
  const count = async (table: string) =>
    Number(((await db.execute(sql.raw(`SELECT count(*)::int AS n FROM ${table}`))) as { rows: { n: number }[] }).rows[0]!.n);
  const logs = await count('run_logs');
  console.log(`seeded ${RUNS} expired runs, ${FRESH} unexpired, ${logs} log lines in ${(seeded / 1000).toFixed(1)} s`);

  // Baseline: the statement retention used before, without the index it did not have.
  await db.execute(sql`DROP INDEX runs_finished_created_idx`);
  const cutoff = sql`now() - make_interval(days => 30)`;
  let baseMs = 0;
  const BASE_BATCHES = 3;
  for (let i = 0; i < BASE_BATCHES; i++) {
    const s = performance.now();
    await db.execute(sql`DELETE FROM runs WHERE id IN (
      SELECT id FROM runs WHERE created_at < ${cutoff} AND status IN ('success', 'error') LIMIT 5000)`);
    baseMs += performance.now() - s;
  }
  const baseRate = (BASE_BATCHES * 5000) / (baseMs / 1000);
  await db.execute(sql`CREATE INDEX runs_finished_created_idx ON runs (created_at) WHERE status IN ('success', 'error')`);
  await db.execute(sql`ANALYZE runs`);

  const before = await count('runs');
  const s = performance.now();
  const removed = await deleteExpired(db, 30, { budgetMs: SECONDS * 1000 });
  const ms = performance.now() - s;
  const rate = removed.runs / (ms / 1000);
  const after = await count('runs');
  if (before - after !== removed.runs) throw new Error(`deleted ${removed.runs} but the table lost ${before - after}`);
  const load = (await import('node:os')).loadavg()[0]!.toFixed(2);
  console.log(
    JSON.stringify(
      {
        runsSeeded: RUNS,
        unexpiredRuns: FRESH,
        logLines: logs,
        baseline: {
          statement: 'LIMIT 5000, no created_at index',
          runsPerSecond: Math.round(baseRate),
          msPerBatch: Math.round(baseMs / BASE_BATCHES),
        },
        current: { seconds: +(ms / 1000).toFixed(1), runsDeleted: removed.runs, done: removed.done, runsPerSecond: Math.round(rate) },
        ratio: +(rate / baseRate).toFixed(1),
        runsPerDayAtThisRate: Math.round(rate * 86_400),
        // A pass every minute for at most 30 s; back to back while a backlog remains.
        runsPerDayAtHalfDuty: Math.round((rate * 86_400) / 2),
        loadAverage1m: load,
      },
      null,
      2,
    ),
  );
} finally {
  await database.close();
  await admin(`DROP DATABASE IF EXISTS ${NAME} WITH (FORCE)`);
}
