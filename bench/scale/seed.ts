/**
 * Seeds a scale database. Usage:
 *
 *   npx tsx bench/scale/seed.ts [--db=terapi_scale] [--connections=1000000] [--records=10000000] [--runs=5000000]
 *                               [--events=N] [--integrations=100] [--retention-days=30] [--pg=postgres://postgres@127.0.0.1:5432/postgres]
 *
 * Drops and creates the database `--db` on the server of `--pg`, migrates it with Terapi's own
 * migrator, then fills it with bench/scale/seed-sql.ts and prints how long each table took. The
 * layout (what is where) is stored as the database's comment, where `bench/scale/measure.ts` reads
 * it, and written with the timings to bench/results/scale-seed.json (`--out` to change).
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { openDatabase } from '../../src/db/client.js';
import { createVault, parseEncryptionKeys } from '../../src/lib/vault.js';
import { SCALE_ENCRYPTION_KEY, seedScale, type StepTiming } from './seed-sql.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const argv = new Map(
  process.argv.slice(2).map((a) => {
    const [k, ...v] = a.replace(/^--/, '').split('=');
    return [k!, v.join('=')] as const;
  }),
);
const num = (name: string, fallback: number) => {
  const v = argv.get(name);
  if (v === undefined) return fallback;
  const n = Number(v.replace(/_/g, '').replace(/k$/i, '000').replace(/m$/i, '000000'));
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: not a number: ${v}`);
  return n;
};

const dbName = argv.get('db') ?? 'terapi_scale';
if (!/^[a-z_][a-z0-9_]{0,62}$/.test(dbName)) throw new Error(`--db: not a plain database name: ${dbName}`);
const adminUrl = argv.get('pg') ?? process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbUrl = (() => {
  const u = new URL(adminUrl);
  u.pathname = `/${dbName}`;
  return u.toString();
})();
const sizes = {
  connections: num('connections', 1_000_000),
  records: num('records', 10_000_000),
  runs: num('runs', 5_000_000),
  events: argv.has('events') ? num('events', 0) : undefined,
  integrations: num('integrations', 100),
  retentionDays: num('retention-days', 30),
};

const say = (msg: string) => process.stderr.write(`[scale seed] ${msg}\n`);
const started = performance.now();

const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
await admin.query(`CREATE DATABASE ${dbName}`);
say(`created database ${dbName}`);

const migrateStarted = performance.now();
const database = await openDatabase({ databaseUrl: dbUrl, poolSize: 2 });
await database.migrate();
await database.close();
const migrateMs = Math.round(performance.now() - migrateStarted);
say(`migrated in ${migrateMs} ms`);

const client = new pg.Client({ connectionString: dbUrl });
await client.connect();
const vault = createVault(parseEncryptionKeys(SCALE_ENCRYPTION_KEY));
const result = await seedScale(client, sizes, {
  vault,
  onStep: (t: StepTiming) =>
    say(`${t.step.padEnd(28)} ${t.table.padEnd(16)} ${String(t.rows).padStart(10)} rows ${(t.ms / 1000).toFixed(1).padStart(7)} s`),
});
const { rows: sizeRows } = await client.query<{ table: string; bytes: string }>(
  `SELECT relname AS table, pg_total_relation_size(oid)::text AS bytes FROM pg_class
    WHERE relkind = 'r' AND relnamespace = 'public'::regnamespace ORDER BY pg_total_relation_size(oid) DESC LIMIT 10`,
);
const { rows: dbSize } = await client.query<{ bytes: string }>('SELECT pg_database_size(current_database())::text AS bytes');
await client.end();

const manifest = {
  layout: result.layout,
  environmentId: result.environmentId,
  seededAt: result.seededAt.toISOString(),
  retentionDays: sizes.retentionDays,
};
await admin.query(`COMMENT ON DATABASE ${dbName} IS ${admin.escapeLiteral(JSON.stringify(manifest))}`);
await admin.end();

const totalMs = Math.round(performance.now() - started);
// Per table: the sum of its insert steps, index builds and vacuum analyze.
const perTable = new Map<string, { rows: number; ms: number; indexMs: number; vacuumMs: number }>();
for (const t of result.timings) {
  const e = perTable.get(t.table) ?? { rows: 0, ms: 0, indexMs: 0, vacuumMs: 0 };
  if (t.step === 'vacuum analyze') e.vacuumMs += t.ms;
  else if (t.step === 'indexes') e.indexMs += t.ms;
  else {
    e.rows += t.rows;
    e.ms += t.ms;
  }
  perTable.set(t.table, e);
}
const mb = (b: string | number) => Math.round(Number(b) / 1e6);
console.table(
  [...perTable].map(([table, e]) => ({
    table,
    rows: e.rows,
    'insert s': +(e.ms / 1000).toFixed(1),
    'indexes s': +(e.indexMs / 1000).toFixed(1),
    'vacuum analyze s': +(e.vacuumMs / 1000).toFixed(1),
    'rows/s': e.ms ? Math.round((e.rows / e.ms) * 1000) : undefined,
    MB: mb(sizeRows.find((r) => r.table === table)?.bytes ?? 0) || undefined,
  })),
);
say(`seeded ${dbName} in ${(totalMs / 1000).toFixed(1)} s (database ${mb(dbSize[0]!.bytes)} MB)`);

const out = path.resolve(root, 'bench/results', argv.get('out') ?? 'scale-seed.json');
writeFileSync(
  out,
  `${JSON.stringify(
    {
      benchmark: 'scale seed (bench/scale/seed.ts)',
      at: new Date().toISOString(),
      database: dbName,
      sizes,
      totalMs,
      migrateMs,
      databaseMB: mb(dbSize[0]!.bytes),
      tables: Object.fromEntries([...perTable].map(([t, e]) => [t, e])),
      steps: result.timings,
      tableMB: Object.fromEntries(sizeRows.map((r) => [r.table, mb(r.bytes)])),
      manifest,
    },
    null,
    2,
  )}\n`,
);
say(`wrote ${path.relative(root, out)}`);
