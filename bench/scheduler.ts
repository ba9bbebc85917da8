/**
 * Scheduler tick benchmark: the tick's due-sync query and the adding of its jobs, on N syncs
 * (default 1,000,000) of hourly schedules in real Postgres and Redis, before and after the rewrite.
 *
 *   npx tsx bench/scheduler.ts                    # 1,000,000 syncs, 5 rounds
 *   npx tsx bench/scheduler.ts --syncs=100000 --rounds=3
 *
 * Seeds with SQL in a database of its own (`terapi_bench_scheduler_<random>`, migrated): 100
 * integrations, N connections, one sync each, `next_run_at` spread over the next hour (so about
 * N/720 are due at each 5-second tick), 1% running under a live lease, 0.1% under an expired one,
 * 1% paused. Then, in each round:
 * - before: the former query (`OR` of the two cases, `ORDER BY next_run_at NULLS FIRST`) with the
 *   former index (`next_run_at WHERE NOT paused`), then its jobs added one `add` at a time;
 * - after: the two partial-index scans (`UNION ALL`), then `addBulk` of the same jobs.
 * Each round's queue is emptied before each add. The database is dropped and the queue's Redis
 * keys (prefix `terapi-bench-scheduler-…`) are deleted at the end.
 */
import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { openDatabase, queryRows } from '../src/db/client.js';
import { createKeyCache } from '../src/environments/key-cache.js';
import { findEnvironmentByKeyHash } from '../src/environments/repository.js';
import { createEnvironmentService } from '../src/environments/service.js';
import { createLogger } from '../src/lib/logger.js';
import { createQueues } from '../src/queue/queues.js';
import { runnableSyncsQuery } from '../src/syncs/repository.js';

const arg = (name: string, dflt: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt);
const SYNCS = arg('syncs', 1_000_000);
const ROUNDS = arg('rounds', 5);
const LIMIT = 1000;
const serverUrl = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const redisUrl = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

const BEFORE = sql`SELECT id FROM syncs
  WHERE NOT paused AND ((running_run_id IS NULL AND next_run_at <= now()) OR (running_run_id IS NOT NULL AND lease_expires_at < now()))
  ORDER BY next_run_at NULLS FIRST LIMIT ${LIMIT}`;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (n: number) => Math.round(n * 10) / 10;

async function main() {
  const name = `terapi_bench_scheduler_${randomBytes(4).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({ databaseUrl: url.toString(), poolSize: 4 });
  const log = createLogger({ level: 'warn' });
  const queues = createQueues({ target: { url: redisUrl }, prefix: `terapi-bench-scheduler-${randomBytes(4).toString('hex')}`, log });
  try {
    await database.migrate();
    const db = database.db;
    const environments = createEnvironmentService({
      db,
      keyCache: createKeyCache({ ttlMs: 0, load: (h) => findEnvironmentByKeyHash(db, h) }),
    });
    const { env } = await environments.createEnvironment((await environments.createAccount('bench')).id, 'bench');
    const t0 = performance.now();
    await db.execute(sql`INSERT INTO integrations (environment_id, unique_key, provider)
                         SELECT ${env.id}, 'i' || g, 'github' FROM generate_series(1, 100) g`);
    await db.execute(sql`INSERT INTO function_configs (environment_id, integration_id, name, type, frequency_seconds)
                         SELECT environment_id, id, 'issues', 'sync', 3600 FROM integrations`);
    await db.execute(sql`INSERT INTO connections (environment_id, integration_id, connection_id, credentials_type)
                         SELECT ${env.id}, (SELECT min(id) FROM integrations) + g % 100, 'c' || g, 'API_KEY' FROM generate_series(1, ${SYNCS}) g`);
    await db.execute(sql`INSERT INTO syncs (environment_id, connection_pk, function_config_id, name, paused, next_run_at,
                                            running_run_id, lease_expires_at)
                         SELECT c.environment_id, c.id, f.id, 'issues', c.id % 100 = 1, now() + make_interval(secs => c.id % 3600 - 5),
                                CASE WHEN c.id % 100 = 2 OR c.id % 1000 = 3 THEN gen_random_uuid() END,
                                CASE WHEN c.id % 100 = 2 THEN now() + interval '1 minute' WHEN c.id % 1000 = 3 THEN now() - interval '1 minute' END
                           FROM connections c JOIN function_configs f ON f.integration_id = c.integration_id`);
    await db.execute(sql`VACUUM ANALYZE syncs`);
    console.log(`seeded ${SYNCS} syncs in ${Math.round((performance.now() - t0) / 1000)} s`);

    const timed = async <T>(fn: () => Promise<T>): Promise<[number, T]> => {
      const s = performance.now();
      const v = await fn();
      return [performance.now() - s, v];
    };
    const addOneByOne = async (ids: number[]) => {
      for (const id of ids) await queues.add('syncs', { syncId: id }, { jobId: `sync-${id}` });
    };
    const addBulk = (ids: number[]) =>
      queues.addBulk(
        'syncs',
        ids.map((id) => ({ data: { syncId: id }, opts: { jobId: `sync-${id}` } })),
      );
    const ids = async (q: ReturnType<typeof sql>) => (await queryRows<{ id: string }>(db, q)).map((r) => Number(r.id));

    const r = { beforeQuery: [] as number[], beforeAdd: [] as number[], afterQuery: [] as number[], afterAdd: [] as number[] };
    let found = { before: 0, after: 0 };
    for (let round = 0; round <= ROUNDS; round++) {
      // Round 0 warms caches and connections and is not counted.
      await db.execute(sql`CREATE INDEX IF NOT EXISTS syncs_due_before_idx ON syncs (next_run_at) WHERE NOT paused`);
      const [bq, before] = await timed(() => ids(BEFORE));
      await queues.queue('syncs').obliterate({ force: true });
      const [ba] = await timed(() => addOneByOne(before));
      await db.execute(sql`DROP INDEX syncs_due_before_idx`);
      const [aq, after] = await timed(() => ids(runnableSyncsQuery(LIMIT)));
      await queues.queue('syncs').obliterate({ force: true });
      const [aa] = await timed(() => addBulk(after));
      found = { before: before.length, after: after.length };
      if (round === 0) continue;
      r.beforeQuery.push(bq);
      r.beforeAdd.push(ba);
      r.afterQuery.push(aq);
      r.afterAdd.push(aa);
    }
    const plan = await queryRows<{ 'QUERY PLAN': string }>(db, sql`EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) ${runnableSyncsQuery(LIMIT)}`);
    console.log(plan.map((p) => p['QUERY PLAN']).join('\n'));
    const row = (label: string, q: number[], a: number[]) =>
      `| ${label} | ${ms(median(q))} | ${ms(median(a))} | ${ms(median(q) + median(a))} |`;
    console.log(`\n${SYNCS} syncs, ${ROUNDS} rounds (medians, ms); jobs found: before ${found.before}, after ${found.after}`);
    console.log('| tick | due query | add jobs | total |\n|:--|--:|--:|--:|');
    console.log(row('before (OR + NULLS FIRST, add one by one)', r.beforeQuery, r.beforeAdd));
    console.log(row('after (two partial indexes, addBulk)', r.afterQuery, r.afterAdd));
    console.log(
      `ratio after/before, total: ${(median(r.afterQuery) + median(r.afterAdd)) / (median(r.beforeQuery) + median(r.beforeAdd))}`,
    );
  } finally {
    await queues
      .queue('syncs')
      .obliterate({ force: true })
      .catch(() => undefined);
    await queues.close();
    await database.close();
    await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
    await admin.end();
  }
}

await main();
