import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { recordsPageQuery } from '../../src/records/repository.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { allRecords } from '../helpers/syncs.js';

// `modified_after` on a large feed: the records changed since then are found through the index on
// (connection, model, modified time), not by walking the feed from its start or scanning the table.

const N = 50_000;
const MODEL = 'GithubIssue';
/** Record g (1…N) was modified at BASE + g seconds. */
const BASE = Date.parse('2026-01-01T00:00:00.000Z');

let t: TestApp;
let connectionPk: number;

interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  Plans?: PlanNode[];
}
const nodes = (n: PlanNode): PlanNode[] => [n, ...(n.Plans ?? []).flatMap(nodes)];

async function plan(modifiedAfter: Date): Promise<PlanNode[]> {
  const text = recordsPageQuery({ connectionPk, model: MODEL, after: 0, limit: 101, modifiedAfter });
  const [row] = await queryRows<{ 'QUERY PLAN': unknown }>(t.db.database.db, sql.raw(`EXPLAIN (FORMAT JSON) ${text}`));
  const json = row!['QUERY PLAN'];
  // node-postgres parses the json column; PGlite may hand back its text.
  const parsed = (typeof json === 'string' ? JSON.parse(json) : json) as { Plan: PlanNode }[];
  return nodes(parsed[0]!.Plan);
}

beforeAll(async () => {
  t = await createTestApp();
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
  const [row] = await queryRows<{ id: string }>(t.db.database.db, sql`SELECT id FROM connections WHERE connection_id = 'acme'`);
  connectionPk = Number(row!.id);
  await t.db.database.db.execute(
    sql`INSERT INTO records (connection_pk, model, external_id, data, hash, last_action, first_seen_at, modified_at)
        SELECT ${connectionPk}, ${MODEL}, 'r-' || g, json_build_object('id', 'r-' || g, 'n', g)::json, md5(g::text), 'added',
               ${new Date(BASE).toISOString()}::timestamptz + make_interval(secs => g),
               ${new Date(BASE).toISOString()}::timestamptz + make_interval(secs => g)
          FROM generate_series(1, ${N}) AS g`,
  );
  await t.db.database.db.execute(sql`ANALYZE records`);
}, 120_000);
afterAll(async () => {
  await t?.close();
});

describe('GET /records with modified_after on a feed of 50,000 records', () => {
  it('finds the last records through the modified-time index, without a sequential scan', async () => {
    const recent = await plan(new Date(BASE + (N - 100) * 1000));
    expect(
      recent.filter((n) => n['Node Type'] === 'Seq Scan'),
      JSON.stringify(recent),
    ).toEqual([]);
    expect(
      recent.some((n) => n['Index Name'] === 'records_modified_idx'),
      JSON.stringify(recent),
    ).toBe(true);
    // Every record qualifies: walking the feed in cursor order is cheapest, still by an index.
    const all = await plan(new Date(BASE));
    expect(
      all.filter((n) => n['Node Type'] === 'Seq Scan'),
      JSON.stringify(all),
    ).toEqual([]);
  });

  it('answers exactly the records modified after the time, in feed order, paged', async () => {
    const after = new Date(BASE + (N - 150) * 1000).toISOString();
    const { records } = await allRecords(t, 'gh', 'acme', MODEL, { limit: 60, extra: `&modified_after=${after}` });
    expect(records.map((r) => r.id)).toEqual(Array.from({ length: 150 }, (_, k) => `r-${N - 149 + k}`));
    expect(records[0]).toMatchObject({
      n: N - 149,
      _nango_metadata: { last_modified_at: new Date(BASE + (N - 149) * 1000).toISOString() },
    });
  });
});
