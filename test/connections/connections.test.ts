import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp({ config: { metadataLimitBytes: 2048, bodyLimitBytes: 64 * 1024 } });
  for (const payload of [
    { provider_config_key: 'github', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 'secret' },
    { provider_config_key: 'sendgrid', provider: 'sendgrid' },
    { provider_config_key: 'twilio', provider: 'twilio' },
    { provider_config_key: 'zendesk', provider: 'zendesk' },
    { provider_config_key: 'salesforce', provider: 'salesforce' },
  ]) {
    const r = await t.call({ method: 'POST', url: '/integration', payload });
    expect(r.statusCode, r.body).toBe(200);
  }
});
afterAll(async () => t?.close());

const create = (payload: Record<string, unknown>, url = '/connection') => t.call({ method: 'POST', url, payload });

describe('importing credentials', () => {
  it('imports an OAuth2 token with expires_in and reports its state, never the token', async () => {
    const before = Date.now();
    const r = await create({
      connection_id: 'user-1',
      provider_config_key: 'github',
      credentials: { type: 'OAUTH2', access_token: 'gho_access_1', refresh_token: 'ghr_refresh_1', expires_in: 3600 },
      metadata: { plan: 'pro' },
    });
    expect(r.statusCode).toBe(200);
    const c = r.json();
    expect(Object.keys(c).sort()).toEqual(['created_at', 'credentials', 'id', 'metadata', 'provider', 'provider_config_key', 'updated_at']);
    expect(c).toMatchObject({ id: 'user-1', provider_config_key: 'github', provider: 'github', metadata: { plan: 'pro' } });
    expect(c.credentials.type).toBe('oauth2');
    const expires = Date.parse(c.credentials.expires_at);
    expect(expires).toBeGreaterThanOrEqual(before + 3600_000 - 1000);
    expect(expires).toBeLessThanOrEqual(Date.now() + 3600_000 + 1000);
    expect(r.body).not.toContain('gho_access_1');

    const got = await t.call({ method: 'GET', url: '/connection/user-1?provider_config_key=github' });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toEqual(c);
    expect((await t.call({ method: 'GET', url: '/v1/connections/user-1?provider_config_key=github' })).json()).toEqual(c);
  });

  it('accepts expires_at as ISO or epoch seconds', async () => {
    const iso = await create({
      connection_id: 'iso',
      provider_config_key: 'github',
      credentials: { access_token: 'a', expires_at: '2030-01-02T03:04:05Z' },
    });
    expect(iso.json().credentials.expires_at).toBe('2030-01-02T03:04:05.000Z');
    const epoch = await create({
      connection_id: 'epoch',
      provider_config_key: 'github',
      credentials: { access_token: 'a', expires_at: 1893553445 },
    });
    expect(epoch.json().credentials.expires_at).toBe('2030-01-02T03:04:05.000Z');
  });

  it('imports API key and basic credentials', async () => {
    const key = await create({ connection_id: 'sg', provider_config_key: 'sendgrid', credentials: { api_key: 'SG.key' } });
    expect(key.statusCode).toBe(200);
    expect(key.json().credentials).toEqual({ type: 'api_key' });
    const basic = await create({
      connection_id: 'tw',
      provider_config_key: 'twilio',
      credentials: { type: 'BASIC', username: 'AC123', password: 'tw-pass' },
    });
    expect(basic.statusCode).toBe(200);
    expect(basic.json().credentials).toEqual({ type: 'basic' });
  });

  it('updates the credentials of an existing connection (import is an upsert)', async () => {
    await create({ connection_id: 'up', provider_config_key: 'sendgrid', credentials: { api_key: 'old' }, metadata: { a: 1 } });
    const again = await create({ connection_id: 'up', provider_config_key: 'sendgrid', credentials: { api_key: 'new' } });
    expect(again.statusCode).toBe(200);
    expect(again.json().metadata).toEqual({ a: 1 });
    const nango = await t.call({ method: 'GET', url: '/connections/up?provider_config_key=sendgrid' });
    expect(nango.json().credentials).toEqual({ type: 'API_KEY', apiKey: 'new' });
  });

  it('encrypts credentials at rest', async () => {
    await create({ connection_id: 'enc', provider_config_key: 'sendgrid', credentials: { api_key: 'SG.plaintext-marker' } });
    const rows = await queryRows<Record<string, unknown>>(t.db.database.db, sql`SELECT * FROM connections WHERE connection_id = 'enc'`);
    expect(JSON.stringify(rows)).not.toContain('plaintext-marker');
    expect(String(rows[0]!.credentials_enc)).toMatch(/^v1:test:/);
  });

  it('validates connection config against the provider (Zendesk subdomain, Salesforce instance URL)', async () => {
    const missing = await create({ connection_id: 'z1', provider_config_key: 'zendesk', credentials: { access_token: 't' } });
    expect(missing.statusCode).toBe(400);
    expect(missing.json().details[0].field).toBe('connection_config.subdomain');
    const bad = await create({
      connection_id: 'z1',
      provider_config_key: 'zendesk',
      credentials: { access_token: 't' },
      connection_config: { subdomain: 'evil.com/x' },
    });
    expect(bad.statusCode).toBe(400);
    const ok = await create({
      connection_id: 'z1',
      provider_config_key: 'zendesk',
      credentials: { access_token: 't' },
      connection_config: { subdomain: 'acme' },
    });
    expect(ok.statusCode).toBe(200);
    const sf = await create({ connection_id: 'sf', provider_config_key: 'salesforce', credentials: { access_token: 't' } });
    expect(sf.statusCode).toBe(400);
    expect(sf.json().details[0].field).toBe('connection_config.instance_url');
    const sfOk = await create({
      connection_id: 'sf',
      provider_config_key: 'salesforce',
      credentials: { access_token: 't' },
      connection_config: { instance_url: 'https://acme.my.salesforce.com' },
    });
    expect(sfOk.statusCode).toBe(200);
  });
});

describe('bad input leaves nothing half-written', () => {
  const countConnections = async () =>
    (await queryRows<{ n: number }>(t.db.database.db, sql`SELECT count(*)::int AS n FROM connections`))[0]!.n;

  it.each([
    [
      'credentials of another auth mode',
      { connection_id: 'x1', provider_config_key: 'github', credentials: { type: 'API_KEY', api_key: 'k' } },
      'credentials.type',
    ],
    [
      'an OAuth token without access_token',
      { connection_id: 'x2', provider_config_key: 'github', credentials: { refresh_token: 'r' } },
      'credentials.access_token',
    ],
    [
      'an API key form with a missing key',
      { connection_id: 'x3', provider_config_key: 'sendgrid', credentials: { type: 'API_KEY' } },
      'credentials.api_key',
    ],
    [
      'unknown credential fields',
      { connection_id: 'x4', provider_config_key: 'sendgrid', credentials: { api_key: 'k', token: 'x' } },
      'credentials',
    ],
    ['no credentials for an OAuth provider', { connection_id: 'x5', provider_config_key: 'github' }, 'credentials'],
    [
      'a non-existent integration',
      { connection_id: 'x6', provider_config_key: 'nope', credentials: { api_key: 'k' } },
      'provider_config_key',
    ],
    [
      'a connection id with a slash',
      { connection_id: 'a/b', provider_config_key: 'sendgrid', credentials: { api_key: 'k' } },
      'connection_id',
    ],
    [
      'a connection id with spaces',
      { connection_id: 'a b', provider_config_key: 'sendgrid', credentials: { api_key: 'k' } },
      'connection_id',
    ],
    [
      'a 10,000-character connection id',
      { connection_id: 'c'.repeat(10_000), provider_config_key: 'sendgrid', credentials: { api_key: 'k' } },
      'connection_id',
    ],
    ['a missing provider_config_key', { connection_id: 'x7', credentials: { api_key: 'k' } }, 'provider_config_key'],
    [
      'metadata over the size limit',
      { connection_id: 'x8', provider_config_key: 'sendgrid', credentials: { api_key: 'k' }, metadata: { big: 'x'.repeat(4000) } },
      'metadata',
    ],
    [
      'a bad expiry',
      { connection_id: 'x9', provider_config_key: 'github', credentials: { access_token: 'a', expires_at: 'tomorrow' } },
      'credentials.expires_at',
    ],
  ])('rejects %s naming the field', async (_label, payload, field) => {
    const before = await countConnections();
    const r = await create(payload);
    expect(r.statusCode).toBe(400);
    const body = r.json();
    expect(body.error).toBe('invalid_request');
    expect(body.details.map((d: { field: string }) => d.field)).toContain(field);
    expect(body.message).toContain(field.split('.').pop());
    expect(await countConnections()).toBe(before);
  });

  it('rejects a body over the limit with 413', async () => {
    const r = await create({
      connection_id: 'big',
      provider_config_key: 'sendgrid',
      credentials: { api_key: 'k' },
      metadata: { x: 'y'.repeat(70_000) },
    });
    expect(r.statusCode).toBe(413);
    expect(r.json().error).toBe('payload_too_large');
  });

  it('requires provider_config_key on connection routes', async () => {
    for (const method of ['GET', 'DELETE'] as const) {
      const r = await t.call({ method, url: '/connection/user-1' });
      expect(r.statusCode).toBe(400);
      expect(r.json().details[0].field).toBe('provider_config_key');
    }
  });

  it('answers 404 for an unknown connection or integration', async () => {
    expect((await t.call({ method: 'GET', url: '/connection/nobody?provider_config_key=github' })).statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: '/connection/user-1?provider_config_key=missing' })).statusCode).toBe(404);
    expect((await t.call({ method: 'DELETE', url: '/connection/nobody?provider_config_key=github' })).statusCode).toBe(404);
  });
});

describe('listing', () => {
  it('pages with a stable keyset cursor, never skipping or repeating', async () => {
    const ids = Array.from({ length: 25 }, (_, i) => `page-${String(i).padStart(2, '0')}`);
    for (const id of ids) await create({ connection_id: id, provider_config_key: 'sendgrid', credentials: { api_key: 'k' } });
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const url: string = `/connection?provider_config_key=sendgrid&search=page-&limit=7${cursor ? `&cursor=${cursor}` : ''}`;
      const r = await t.call({ method: 'GET', url });
      expect(r.statusCode).toBe(200);
      const body = r.json();
      seen.push(...body.connections.map((c: { id: string }) => c.id));
      cursor = body.next_cursor;
      pages++;
      // A connection created mid-iteration lands after the cursor, never in an earlier page.
      if (pages === 2) await create({ connection_id: 'page-99', provider_config_key: 'sendgrid', credentials: { api_key: 'k' } });
    } while (cursor);
    expect(seen).toEqual([...ids, 'page-99']);
    expect(pages).toBe(4);
  });

  it('filters by connection id and end user', async () => {
    await create({
      connection_id: 'eu-1',
      provider_config_key: 'sendgrid',
      credentials: { api_key: 'k' },
      end_user: { id: 'u-42', email: 'a@b.co' },
    });
    const byUser = await t.call({ method: 'GET', url: '/connection?end_user_id=u-42' });
    expect(byUser.json().connections.map((c: { id: string }) => c.id)).toEqual(['eu-1']);
    const byId = await t.call({ method: 'GET', url: '/v1/connections?connection_id=eu-1' });
    expect(byId.json().connections).toHaveLength(1);
  });

  it('rejects forged cursors and out-of-range limits', async () => {
    for (const q of [
      'cursor=not-a-cursor',
      `cursor=${Buffer.from('{"id":1}').toString('base64url')}`,
      'limit=0',
      'limit=1000000',
      'limit=abc',
    ]) {
      const r = await t.call({ method: 'GET', url: `/connection?${q}` });
      expect(r.statusCode, q).toBe(400);
      expect(r.json().message).toMatch(/cursor|limit/);
    }
  });
});

describe('metadata', () => {
  it('replaces and merges', async () => {
    await create({ connection_id: 'meta', provider_config_key: 'sendgrid', credentials: { api_key: 'k' }, metadata: { a: 1, b: 2 } });
    const merged = await t.call({
      method: 'PATCH',
      url: '/connection/meta/metadata?provider_config_key=sendgrid',
      payload: { b: 3, c: 4 },
    });
    expect(merged.statusCode).toBe(200);
    expect(merged.json().metadata).toEqual({ a: 1, b: 3, c: 4 });
    const replaced = await t.call({ method: 'POST', url: '/connection/meta/metadata?provider_config_key=sendgrid', payload: { z: true } });
    expect(replaced.json().metadata).toEqual({ z: true });
  });

  it('applies Nango-style metadata to several connections, all or nothing', async () => {
    for (const id of ['m1', 'm2'])
      await create({ connection_id: id, provider_config_key: 'sendgrid', credentials: { api_key: 'k' }, metadata: { keep: id } });
    const ok = await t.call({
      method: 'PATCH',
      url: '/connection/metadata',
      payload: { connection_id: ['m1', 'm2'], provider_config_key: 'sendgrid', metadata: { team: 'x' } },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.json()).toEqual({ connection_id: ['m1', 'm2'], provider_config_key: 'sendgrid', metadata: { team: 'x' } });
    const m1 = await t.call({ method: 'GET', url: '/connection/m1?provider_config_key=sendgrid' });
    expect(m1.json().metadata).toEqual({ keep: 'm1', team: 'x' });

    const partial = await t.call({
      method: 'POST',
      url: '/connection/metadata',
      payload: { connection_id: ['m1', 'ghost'], provider_config_key: 'sendgrid', metadata: { wiped: true } },
    });
    expect(partial.statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: '/connection/m1?provider_config_key=sendgrid' })).json().metadata).toEqual({
      keep: 'm1',
      team: 'x',
    });
  });

  it('refuses a merge whose result would exceed the limit, changing nothing', async () => {
    await create({
      connection_id: 'fat',
      provider_config_key: 'sendgrid',
      credentials: { api_key: 'k' },
      metadata: { a: 'x'.repeat(1500) },
    });
    const r = await t.call({
      method: 'PATCH',
      url: '/connection/fat/metadata?provider_config_key=sendgrid',
      payload: { b: 'y'.repeat(1500) },
    });
    expect(r.statusCode).toBe(400);
    expect(r.json().details[0].field).toBe('metadata');
    const after = await t.call({ method: 'GET', url: '/connection/fat?provider_config_key=sendgrid' });
    expect(Object.keys(after.json().metadata)).toEqual(['a']);
  });
});

describe('Nango-compatible /connections', () => {
  it('imports with a credentials object, returns the token on GET, lists and deletes', async () => {
    const created = await t.call({
      method: 'POST',
      url: '/connections',
      payload: {
        provider_config_key: 'github',
        connection_id: 'nango-1',
        credentials: {
          type: 'OAUTH2',
          access_token: 'gho_nango',
          refresh_token: 'ghr_nango',
          expires_at: '2031-01-01T00:00:00Z',
          raw: { scope: 'repo' },
        },
        tags: { plan: 'pro' },
        end_user: { id: 'eu', email: 'eu@example.com' },
      },
    });
    expect(created.statusCode).toBe(201);
    expect(created.body).not.toContain('gho_nango');
    expect(created.json()).toMatchObject({ connection_id: 'nango-1', tags: { plan: 'pro' }, end_user: { id: 'eu' }, errors: [] });

    const got = await t.call({ method: 'GET', url: '/connections/nango-1?provider_config_key=github' });
    expect(got.statusCode).toBe(200);
    expect(got.json().credentials).toEqual({
      type: 'OAUTH2',
      access_token: 'gho_nango',
      expires_at: '2031-01-01T00:00:00.000Z',
      raw: { scope: 'repo' },
    });
    expect(got.json().last_fetched_at).not.toBeNull();
    const withRefresh = await t.call({ method: 'GET', url: '/connections/nango-1?provider_config_key=github&refresh_token=true' });
    expect(withRefresh.json().credentials.refresh_token).toBe('ghr_nango');

    const list = await t.call({ method: 'GET', url: '/connections?connectionId=nango-1' });
    expect(list.json().connections).toEqual([
      expect.objectContaining({ connection_id: 'nango-1', provider_config_key: 'github', provider: 'github', errors: [] }),
    ]);
    expect(list.body).not.toContain('gho_nango');

    const generated = await t.call({
      method: 'POST',
      url: '/connections',
      payload: { provider_config_key: 'sendgrid', credentials: { type: 'API_KEY', apiKey: 'k' } },
    });
    expect(generated.statusCode).toBe(201);
    expect(generated.json().connection_id).toMatch(/^[0-9a-f-]{36}$/);

    const del = await t.call({ method: 'DELETE', url: '/connections/nango-1?provider_config_key=github' });
    expect(del.json()).toEqual({ success: true });
    expect((await t.call({ method: 'GET', url: '/connections/nango-1?provider_config_key=github' })).statusCode).toBe(404);
  });
});

describe('last_fetched_at', () => {
  it('is stamped behind the read: every GET answers its own time, and the row gets the latest within a moment', async () => {
    const created = await t.call({
      method: 'POST',
      url: '/connections',
      payload: { provider_config_key: 'github', connection_id: 'fetched-1', credentials: { type: 'OAUTH2', access_token: 'gho_fetched' } },
    });
    expect(created.statusCode, created.body).toBe(201);
    const stamped = async () =>
      (
        await queryRows<{ at: string | null }>(
          t.db.database.db,
          sql`SELECT last_fetched_at::text AS at FROM connections WHERE connection_id = 'fetched-1'`,
        )
      )[0]!.at;
    expect(await stamped()).toBeNull();

    const times: string[] = [];
    for (let i = 0; i < 3; i++) {
      const got = await t.call({ method: 'GET', url: '/connections/fetched-1?provider_config_key=github' });
      expect(got.statusCode, got.body).toBe(200);
      times.push(got.json().last_fetched_at);
    }
    expect([...times].sort()).toEqual(times);
    // Written together, once the stamps are flushed (within a second on their own; at once here).
    await t.services.connections.flushFetchStamps();
    const at = await stamped();
    expect(at).not.toBeNull();
    expect(new Date(at!).toISOString()).toBe(times[2]);
  });
});
