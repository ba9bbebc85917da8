import { type SQL, sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { allRecords, enable, until } from '../helpers/syncs.js';

/**
 * Deleting a connection or an integration, or disabling a sync, answers at once; the records go
 * afterwards, in batches, on the worker. Until then they can be read by nobody, and a connection
 * created again with the same id starts with none of them.
 */
let t: TestApp;
const q = <T = Record<string, unknown>>(query: SQL) => queryRows<T>(t.services.db, query);
const count = async (where: SQL) => Number((await q<{ n: number }>(sql`SELECT count(*)::int AS n FROM records WHERE ${where}`))[0]!.n);
const pkOf = async (key: string, connectionId: string) =>
  Number(
    (
      await q<{ id: number }>(
        sql`SELECT c.id FROM connections c JOIN integrations i ON i.id = c.integration_id
             WHERE i.environment_id = ${t.env.id} AND i.unique_key = ${key} AND c.connection_id = ${connectionId}`,
      )
    )[0]!.id,
  );

/** Records written the way a sync writes them, many more than one purge statement deletes. */
async function seed(connectionPk: number, model: string, n: number) {
  await q(sql`INSERT INTO records (connection_pk, model, external_id, data, hash, last_action)
              SELECT ${connectionPk}, ${model}, g::text, json_build_object('id', g::text, 'title', 'issue ' || g), md5(g::text), 'added'
                FROM generate_series(1, ${n}) g`);
}

async function integration(key: string) {
  const r = await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: key, provider: 'github', oauth_client_id: 'id', oauth_client_secret: 'secret' },
  });
  expect(r.statusCode, r.body).toBe(200);
}

async function connection(key: string, connectionId: string) {
  const r = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { connection_id: connectionId, provider_config_key: key, credentials: { type: 'OAUTH2', access_token: 'gho_x' } },
  });
  expect(r.statusCode, r.body).toBe(200);
  return pkOf(key, connectionId);
}

const purged = () => t.logs.filter((l) => l.includes('"records purged"')).length;

beforeAll(async () => {
  t = await createTestApp({ workers: true });
});
afterAll(async () => t?.close());

describe('purging records', () => {
  it('deleting a connection answers at once; the worker then deletes its records in batches', async () => {
    await integration('gh-conn');
    const pk = await connection('gh-conn', 'user-1');
    await seed(pk, 'GithubIssue', 12_000);
    const before = purged();

    const del = await t.call({ method: 'DELETE', url: '/connection/user-1?provider_config_key=gh-conn' });
    expect(del.statusCode).toBe(204);
    // Created again with the same id while the purge may still be running: none of the old records.
    const again = await connection('gh-conn', 'user-1');
    expect(again).not.toBe(pk);
    expect((await allRecords(t, 'gh-conn', 'user-1', 'GithubIssue')).records).toEqual([]);

    await until('the records purged', async () => (await count(sql`connection_pk = ${pk}`)) === 0);
    await until('the purge finished', async () => (await q(sql`SELECT 1 FROM purges`)).length === 0);
    // The worker deleted them, not the request.
    expect(purged()).toBeGreaterThan(before);
  });

  it('deleting an integration purges the records of every connection it had', async () => {
    await integration('gh-int');
    const a = await connection('gh-int', 'a');
    const b = await connection('gh-int', 'b');
    await seed(a, 'GithubIssue', 7_000);
    await seed(b, 'GithubPullRequest', 3_000);

    expect((await t.call({ method: 'DELETE', url: '/integration/gh-int' })).statusCode).toBe(204);
    await integration('gh-int');
    await connection('gh-int', 'a');
    expect((await allRecords(t, 'gh-int', 'a', 'GithubIssue')).records).toEqual([]);

    await until('the records purged', async () => (await count(sql`connection_pk IN (${a}, ${b})`)) === 0);
    await until('the purge finished', async () => (await q(sql`SELECT 1 FROM purges`)).length === 0);
  });

  it("disabling a sync purges its models' records on every connection, and only those", async () => {
    await integration('gh-fn');
    const a = await connection('gh-fn', 'a');
    const b = await connection('gh-fn', 'b');
    await enable(t, 'gh-fn', 'issues', { auto_start: false });
    await enable(t, 'gh-fn', 'pull-requests', { auto_start: false });
    await seed(a, 'GithubIssue', 6_000);
    await seed(b, 'GithubIssue', 6_000);
    await seed(a, 'GithubPullRequest', 100);

    expect((await t.call({ method: 'DELETE', url: '/integration/gh-fn/functions/issues' })).statusCode).toBe(204);
    await until('the records purged', async () => (await count(sql`connection_pk IN (${a}, ${b}) AND model = 'GithubIssue'`)) === 0);
    await until('the purge finished', async () => (await q(sql`SELECT 1 FROM purges`)).length === 0);
    expect(await count(sql`connection_pk = ${a} AND model = 'GithubPullRequest'`)).toBe(100);
  });

  it('enabling a sync again while its purge waits finishes the purge first', async () => {
    await integration('gh-re');
    const a = await connection('gh-re', 'a');
    await enable(t, 'gh-re', 'issues', { auto_start: false });
    await seed(a, 'GithubIssue', 20_000);

    expect((await t.call({ method: 'DELETE', url: '/integration/gh-re/functions/issues' })).statusCode).toBe(204);
    await enable(t, 'gh-re', 'issues', { auto_start: false });
    // Whatever the worker had done by then, nothing of the disabled sync's records is left for it.
    expect(await count(sql`connection_pk = ${a} AND model = 'GithubIssue'`)).toBe(0);
    await until('the purge finished', async () => (await q(sql`SELECT 1 FROM purges`)).length === 0);
  });
});
