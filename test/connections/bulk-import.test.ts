/**
 * Bulk import (`POST /connections/import`, `/connection/import`, `/v1/connections/import`): a JSON
 * array or NDJSON of import bodies, one result per item, invalid items reported by field without
 * stopping the others, the same encryption and syncs as a single import, webhooks only when asked.
 */
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { createTestApp, type TestApp, type TestEnvironment } from '../helpers/app.js';
import { until } from '../helpers/syncs.js';
import { startWebhookReceiver, type WebhookReceiver } from '../security/fixtures.js';

const LIMIT = 256 * 1024;
let t: TestApp;
let rx: WebhookReceiver;
let B: TestEnvironment;

beforeAll(async () => {
  rx = await startWebhookReceiver('/hooks');
  t = await createTestApp({ workers: true, config: { importBodyLimitBytes: LIMIT } });
  B = await t.newEnvironment('other');
  const ok = async (res: Promise<{ statusCode: number; body: string }>) =>
    expect((await res).statusCode, (await res).body).toBeLessThan(300);
  await ok(t.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls: [rx.url] } }));
  await ok(
    t.call({
      method: 'POST',
      url: '/integration',
      payload: { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' },
    }),
  );
  // A sync that never starts by itself: every new connection gets its row, nothing runs.
  await ok(t.call({ method: 'POST', url: '/integration/gh/functions', payload: { name: 'issues', auto_start: false } }));
  await ok(t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'sg', provider: 'sendgrid' } }));
});
afterAll(async () => {
  await t?.close();
  await rx?.close();
});

interface Result {
  index: number;
  connection_id: string | null;
  provider_config_key: string | null;
  status: 'created' | 'updated' | 'error';
  error?: string;
  message?: string;
  details?: { field: string; message: string }[];
}
interface Summary {
  created: number;
  updated: number;
  failed: number;
  results: Result[];
}

const gh = (id: string, token = `gho_${id}`) => ({
  provider_config_key: 'gh',
  connection_id: id,
  credentials: { type: 'OAUTH2', access_token: token, refresh_token: `ghr_${id}`, expires_in: 3600 },
  metadata: { from: 'bulk' },
});
const ndjson = (items: unknown[]) => `${items.map((i) => (typeof i === 'string' ? i : JSON.stringify(i))).join('\n')}\n`;
const importNdjson = (body: string, opts: { url?: string; key?: string; query?: string } = {}) =>
  t.call({
    method: 'POST',
    url: `${opts.url ?? '/connections/import'}${opts.query ?? ''}`,
    key: opts.key,
    headers: { 'content-type': 'application/x-ndjson' },
    payload: body,
  });
const rows = <T>(q: ReturnType<typeof sql>) => queryRows<T & Record<string, unknown>>(t.db.database.db, q);
const authHooks = (connectionId: string) =>
  rx.received
    .map((r) => JSON.parse(r.body) as { type: string; connectionId: string; operation: string })
    .filter((b) => b.type === 'auth' && b.connectionId === connectionId);

describe('bulk import', () => {
  it('imports a JSON array, reporting each invalid item by field without stopping the others', async () => {
    const res = await t.call({
      method: 'POST',
      url: '/connections/import',
      payload: [
        gh('arr-1'),
        { provider_config_key: 'gh', connection_id: 'arr-2', credentials: { type: 'OAUTH2' } },
        { provider_config_key: 'nope', connection_id: 'arr-3', credentials: { access_token: 'x' } },
        { provider_config_key: 'gh', connection_id: 'bad id with spaces' },
        { provider_config_key: 'sg', connection_id: 'arr-5', credentials: { api_key: 'SG.key-5' } },
        { provider_config_key: 'gh', connection_id: 'arr-6', credentials: { access_token: 'x' }, metadata: { bad: 'nul\u0000' } },
      ],
    });
    expect(res.statusCode, res.body).toBe(200);
    const body = res.json<Summary>();
    expect(body).toMatchObject({ created: 2, updated: 0, failed: 4 });
    expect(body.results.map((r) => [r.index, r.connection_id, r.status])).toEqual([
      [0, 'arr-1', 'created'],
      [1, 'arr-2', 'error'],
      [2, 'arr-3', 'error'],
      [3, 'bad id with spaces', 'error'],
      [4, 'arr-5', 'created'],
      [5, 'arr-6', 'error'],
    ]);
    expect(body.results[1]).toMatchObject({ error: 'invalid_request', details: [{ field: 'credentials.access_token' }] });
    expect(body.results[2]).toMatchObject({ error: 'invalid_request', details: [{ field: 'provider_config_key' }] });
    expect(body.results[2]!.message).toContain('no integration "nope"');
    expect(body.results[3]).toMatchObject({ error: 'invalid_request', details: [{ field: 'connection_id' }] });
    expect(body.results[5]).toMatchObject({ error: 'invalid_request', details: [{ field: 'metadata.bad' }] });

    // Stored as a single import stores it: encrypted at rest, readable through the API, with its sync.
    const got = await t.call({ method: 'GET', url: '/connections/arr-1?provider_config_key=gh' });
    expect(got.statusCode, got.body).toBe(200);
    expect(got.json()).toMatchObject({ credentials: { access_token: 'gho_arr-1' }, metadata: { from: 'bulk' } });
    const [row] = await rows<{ enc: string; syncs: number }>(
      sql`SELECT credentials_enc AS enc, (SELECT count(*)::int FROM syncs s WHERE s.connection_pk = c.id) AS syncs FROM connections c WHERE connection_id = 'arr-1'`,
    );
    expect(row!.enc).toMatch(/^v1:/);
    expect(row!.enc).not.toContain('gho_arr-1');
    expect(row!.syncs).toBe(1);
    expect((await t.call({ method: 'GET', url: '/connections/arr-2?provider_config_key=gh' })).statusCode).toBe(404);
  });

  it('imports NDJSON, names malformed lines, and imports a repeated connection in order', async () => {
    const items = Array.from({ length: 1200 }, (_, i) => gh(`nd-${i}`));
    const body = ndjson([...items.slice(0, 2), '{not json', '', gh('nd-0', 'gho_second'), ...items.slice(2)]);
    const res = await importNdjson(body);
    expect(res.statusCode, res.body).toBe(200);
    const out = res.json<Summary>();
    expect(out).toMatchObject({ created: 1200, updated: 1, failed: 1 });
    expect(out.results).toHaveLength(1202);
    expect(out.results[2]).toMatchObject({ index: 2, status: 'error', error: 'invalid_json' });
    expect(out.results[2]!.message).toMatch(/^line 3 /);
    expect(out.results[3]).toMatchObject({ index: 3, connection_id: 'nd-0', status: 'updated' });
    const got = await t.call({ method: 'GET', url: '/connections/nd-0?provider_config_key=gh' });
    expect(got.json()).toMatchObject({ credentials: { access_token: 'gho_second' } });
    const [count] = await rows<{ n: number; syncs: number }>(
      sql`SELECT count(*)::int AS n, (SELECT count(*)::int FROM syncs s JOIN connections c ON c.id = s.connection_pk WHERE c.connection_id LIKE 'nd-%') AS syncs FROM connections WHERE connection_id LIKE 'nd-%'`,
    );
    expect(count).toEqual({ n: 1200, syncs: 1200 });
  });

  it('is idempotent: importing the same file again updates every connection', async () => {
    const items = Array.from({ length: 700 }, (_, i) => gh(`re-${i}`));
    const first = await importNdjson(ndjson(items), { url: '/v1/connections/import' });
    expect(first.json()).toMatchObject({ created: 700, updated: 0, failed: 0 });
    const again = await importNdjson(ndjson(items), { url: '/v1/connections/import' });
    expect(again.json()).toMatchObject({ created: 0, updated: 700, failed: 0 });
    expect(again.json<Summary>().results.every((r) => r.status === 'updated')).toBe(true);
    const [count] = await rows<{ n: number; syncs: number }>(
      sql`SELECT count(*)::int AS n, (SELECT count(*)::int FROM syncs s JOIN connections c ON c.id = s.connection_pk WHERE c.connection_id LIKE 're-%') AS syncs FROM connections WHERE connection_id LIKE 're-%'`,
    );
    expect(count).toEqual({ n: 700, syncs: 700 });
    // The Terapi families validate items as POST /connection does: connection_id is required there.
    const strict = await importNdjson(ndjson([{ provider_config_key: 'gh', credentials: { access_token: 'x' } }]), {
      url: '/connection/import',
    });
    expect(strict.json<Summary>().results[0]).toMatchObject({ status: 'error', details: [{ field: 'connection_id' }] });
  });

  it('sends auth webhooks only with webhooks=true', async () => {
    const quiet = await importNdjson(ndjson([gh('hook-off')]));
    expect(quiet.json()).toMatchObject({ created: 1 });
    const loud = await importNdjson(ndjson([gh('hook-on')]), { query: '?webhooks=true' });
    expect(loud.json()).toMatchObject({ created: 1 });
    await until('the creation webhook', async () => authHooks('hook-on').length === 1);
    expect(authHooks('hook-on')[0]).toMatchObject({ operation: 'creation' });
    // Events are delivered in order: the earlier import would have arrived first.
    expect(authHooks('hook-off')).toHaveLength(0);
    await importNdjson(ndjson([gh('hook-on', 'gho_rotated')]), { query: '?webhooks=true' });
    await until('the override webhook', async () => authHooks('hook-on').length === 2);
    expect(authHooks('hook-on')[1]).toMatchObject({ operation: 'override' });
    expect(rx.received.map((r) => r.body).join('\n')).not.toContain('gho_');
  });

  it("cannot import into another environment's integration", async () => {
    const before = await rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM connections`);
    const res = await importNdjson(ndjson([gh('tenant-1')]), { key: B.key });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json<Summary>().results[0]).toMatchObject({
      status: 'error',
      error: 'invalid_request',
      details: [{ field: 'provider_config_key' }],
    });
    expect(await rows<{ n: number }>(sql`SELECT count(*)::int AS n FROM connections`)).toEqual(before);
    expect((await t.call({ method: 'GET', url: '/connections/tenant-1?provider_config_key=gh' })).statusCode).toBe(404);
  });

  it('answers 413 above the body limit or the item limit, and 400 for a body that is not an array', async () => {
    const big = ndjson(Array.from({ length: 2000 }, (_, i) => gh(`big-${i}`)));
    expect(Buffer.byteLength(big)).toBeGreaterThan(LIMIT);
    const tooBig = await importNdjson(big);
    expect(tooBig.statusCode).toBe(413);
    expect(tooBig.json()).toMatchObject({ error: 'payload_too_large' });
    expect(await rows(sql`SELECT 1 FROM connections WHERE connection_id LIKE 'big-%'`)).toHaveLength(0);

    const manyItems = await t.call({ method: 'POST', url: '/connections/import', payload: Array.from({ length: 10_001 }, () => 0) });
    expect(manyItems.statusCode).toBe(413);
    expect(manyItems.json<{ message: string }>().message).toContain('10000');

    const notArray = await t.call({ method: 'POST', url: '/connections/import', payload: gh('single') });
    expect(notArray.statusCode).toBe(400);
    expect(notArray.json()).toMatchObject({ error: 'invalid_request', details: [{ field: 'body' }] });
    const noKey = await importNdjson(ndjson([gh('nokey')]), { key: 'terapi_sk_nothing' });
    expect(noKey.statusCode).toBe(401);
  });
});
