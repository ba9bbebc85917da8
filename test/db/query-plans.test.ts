import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  connectionIdOf,
  integrationKeyOf,
  integrationOf,
  SCALE_MODEL,
  SCALE_SECRET_KEY,
  SCALE_SYNC_NAME,
  type ScaleLayout,
  seedScale,
} from '../../bench/scale/seed-sql.js';
import { createTestApp, createTestDatabase, type TestApp, type TestDatabase, testVault, usingPostgres } from '../helpers/app.js';

/**
 * The hot paths at a size where a sequential scan shows: a seeded database (100k connections and
 * syncs, 1M records on PostgreSQL; a fifth of that on PGlite, which seeds slower), the real
 * requests through the API, every statement they send captured, then EXPLAINed with its own
 * parameters. A plan that scans one of the big tables from end to end fails the suite, so a
 * query that stops using its index is caught here, not at a customer with a million connections.
 */
const BIG_TABLES = new Set(['connections', 'syncs', 'records', 'runs', 'run_logs', 'events', 'webhook_deliveries']);
const sizes = usingPostgres
  ? { connections: 100_000, records: 1_000_000, runs: 200_000, bigIntegrationConnections: 10_000, heavyRecords: 100_000 }
  : { connections: 20_000, records: 200_000, runs: 40_000, bigIntegrationConnections: 5_000, heavyRecords: 20_000 };

interface Statement {
  label: string;
  sql: string;
  params: unknown[];
}

interface RawClient {
  query(text: string, params?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount?: number | null; affectedRows?: number }>;
}

let db: TestDatabase;
let t: TestApp;
let layout: ScaleLayout;
let raw: RawClient;
let label: string | undefined;
const statements: Statement[] = [];

beforeAll(async () => {
  db = await createTestDatabase({
    onQuery: (query, params) => {
      if (label) statements.push({ label, sql: query, params });
    },
  });
  // drizzle keeps its driver (a pg Pool or the PGlite instance) as `$client`; both answer query(text, params).
  raw = (db.database.db as unknown as { $client: RawClient }).$client;
  const vault = testVault();
  // The seed sets session options: on PostgreSQL it gets one session of its own, not the pool.
  const session = db.url ? new pg.Client({ connectionString: db.url }) : undefined;
  await session?.connect();
  const seeder: RawClient = session ?? raw;
  try {
    const seeded = await seedScale(
      {
        async query(text, values) {
          const r = await seeder.query(text, values);
          return { rows: r.rows, rowCount: r.rowCount ?? r.affectedRows ?? null };
        },
      },
      sizes,
      { vault },
    );
    layout = seeded.layout;
  } finally {
    await session?.end();
  }
  t = await createTestApp({ db, vault });
}, 600_000);

afterAll(async () => {
  await t?.close();
  await db?.drop();
});

/** Runs `work` with every statement it sends recorded under `name`. */
async function captured(name: string, work: () => Promise<void>) {
  label = name;
  try {
    await work();
  } finally {
    label = undefined;
  }
}

const call = (opts: Parameters<TestApp['call']>[0]) => t.call({ key: SCALE_SECRET_KEY, ...opts });
const keyOf = (n: number) => integrationKeyOf(integrationOf(layout, n));

function seqScans(plan: unknown, found: string[] = []): string[] {
  if (Array.isArray(plan)) for (const p of plan) seqScans(p, found);
  else if (plan && typeof plan === 'object') {
    const node = plan as Record<string, unknown>;
    if (node['Node Type'] === 'Seq Scan' && BIG_TABLES.has(String(node['Relation Name']))) found.push(String(node['Relation Name']));
    for (const v of Object.values(node)) if (v && typeof v === 'object') seqScans(v, found);
  }
  return found;
}

describe('query plans of the hot paths at scale', () => {
  it('every statement the hot paths send reads the big tables through an index', async () => {
    const n = layout.connections - 7; // an ordinary connection, not one of the big integration's
    const heavy = layout.deleteTarget;
    await captured('GET /auth/token', async () => {
      const r = await call({ method: 'GET', url: `/auth/token/${keyOf(n)}/${connectionIdOf(n)}` });
      expect(r.statusCode, r.body).toBe(200);
    });
    await captured('Nango GET /connections/{id}', async () => {
      const r = await call({ method: 'GET', url: `/connections/${connectionIdOf(n - 1)}?provider_config_key=${keyOf(n - 1)}` });
      expect(r.statusCode, r.body).toBe(200);
    });
    await captured('GET /connection (list, two pages)', async () => {
      const first = await call({ method: 'GET', url: `/connection?limit=100` });
      expect(first.statusCode, first.body).toBe(200);
    });
    await captured('POST /connections (import)', async () => {
      const r = await call({
        method: 'POST',
        url: '/connections',
        payload: {
          provider_config_key: keyOf(n),
          connection_id: 'plan-import-1',
          credentials: {
            type: 'OAUTH2',
            access_token: 'gho_plan',
            refresh_token: 'ghr_plan',
            expires_at: new Date(Date.now() + 86_400_000),
          },
        },
      });
      expect(r.statusCode, r.body).toBeLessThan(300);
    });
    await captured('GET /sync/status (big integration)', async () => {
      const r = await call({ method: 'GET', url: `/sync/status?provider_config_key=${layout.bigIntegration.providerConfigKey}&syncs=*` });
      expect(r.statusCode, r.body).toBe(200);
    });
    await captured('POST /sync/pause + /sync/start (big integration)', async () => {
      for (const action of ['pause', 'start']) {
        const r = await call({
          method: 'POST',
          url: `/sync/${action}`,
          payload: { provider_config_key: layout.bigIntegration.providerConfigKey, syncs: [SCALE_SYNC_NAME] },
        });
        expect(r.statusCode, r.body).toBeLessThan(300);
      }
    });
    await captured('GET /records (modified_after)', async () => {
      const after = new Date(Date.now() - 86_400_000).toISOString();
      const r = await call({
        method: 'GET',
        url: `/records?model=${SCALE_MODEL}&limit=100&modified_after=${encodeURIComponent(after)}`,
        headers: { 'connection-id': heavy.connectionId, 'provider-config-key': heavy.providerConfigKey },
      });
      expect(r.statusCode, r.body).toBe(200);
    });
    await captured('DELETE /connections/{id} (100k records)', async () => {
      const r = await call({ method: 'DELETE', url: `/connections/${heavy.connectionId}?provider_config_key=${heavy.providerConfigKey}` });
      expect(r.statusCode, r.body).toBeLessThan(300);
    });

    const labels = new Set(statements.map((s) => s.label));
    // Every path above sent statements (a path served from a cache would test nothing).
    expect([...labels].length).toBeGreaterThanOrEqual(7);
    const bad: string[] = [];
    let explained = 0;
    for (const s of statements) {
      if (!/^\s*(select|update|delete|insert|with)\b/i.test(s.sql)) continue;
      if (![...BIG_TABLES].some((table) => s.sql.includes(`"${table}"`) || new RegExp(`\\b${table}\\b`).test(s.sql))) continue;
      const { rows } = await raw.query(`EXPLAIN (FORMAT JSON) ${s.sql}`, s.params);
      explained++;
      const plan = rows[0]?.['QUERY PLAN'];
      const scans = seqScans(typeof plan === 'string' ? JSON.parse(plan) : plan);
      if (scans.length) bad.push(`${s.label}: Seq Scan on ${scans.join(', ')}\n    ${s.sql.slice(0, 400)}`);
    }
    expect(explained).toBeGreaterThan(10);
    expect(bad, bad.join('\n')).toEqual([]);
  });
});
