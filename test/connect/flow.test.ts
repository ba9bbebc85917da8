import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { DEFAULT_CLIENT, type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, defaultTestConfig, type TestApp } from '../helpers/app.js';
import { createFixtureIntegration, tokenWorks } from '../helpers/oauth.js';

let t: TestApp;
let server: OAuthServer;
let fakeApi: Server;
let fakeApiUrl: string;
const callbackUrl = `${defaultTestConfig.serverUrl}/oauth/callback`;

beforeAll(async () => {
  server = await startOAuthServer({ clients: [{ ...DEFAULT_CLIENT, redirect_uris: [callbackUrl] }] });
  // A provider API whose key check answers 401 for anything but "good-key".
  fakeApi = createServer((req, res) => {
    const ok = req.headers.authorization === 'Bearer good-key';
    res
      .writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
      .end(JSON.stringify(ok ? { scopes: [] } : { errors: [{ message: 'bad key' }] }));
  });
  await new Promise<void>((r) => fakeApi.listen(0, '127.0.0.1', r));
  fakeApiUrl = `http://127.0.0.1:${(fakeApi.address() as AddressInfo).port}`;
  t = await createTestApp({ config: { allowProviderUrlOverrides: true } });
  await createFixtureIntegration(t, server);
  await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'other', provider: 'slack' } });
  await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: 'sendgrid', provider: 'sendgrid', api_base_url: fakeApiUrl },
  });
  await t.call({
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: 'zendesk',
      provider: 'zendesk',
      oauth_client_id: DEFAULT_CLIENT.client_id,
      oauth_client_secret: DEFAULT_CLIENT.client_secret,
      authorization_url: server.authorizationUrl,
      token_url: server.tokenUrl,
    },
  });
});
afterAll(async () => {
  await t?.close();
  await server?.close();
  await new Promise((r) => fakeApi?.close(r));
});

async function newSession(body: Record<string, unknown> = {}) {
  const r = await t.call({
    method: 'POST',
    url: '/connect/sessions',
    payload: {
      end_user: { id: 'user-7', email: 'u7@example.com', display_name: 'U Seven' },
      allowed_integrations: ['fixture', 'sendgrid', 'zendesk'],
      tags: { plan: 'pro' },
      ...body,
    },
  });
  expect(r.statusCode, r.body).toBe(201);
  const data = r.json().data as { token: string; connect_link: string; expires_at: string };
  // Opening the link moves the token into a cookie and drops it from the URL.
  const open = await t.app.inject({ method: 'GET', url: new URL(data.connect_link).pathname + new URL(data.connect_link).search });
  expect(open.statusCode).toBe(303);
  expect(open.headers.location).toBe('/connect');
  const cookie = String(open.headers['set-cookie']).split(';')[0]!;
  expect(String(open.headers['set-cookie'])).toContain('HttpOnly');
  return { ...data, cookie };
}

const page = (cookie: string, url: string, method: 'GET' | 'POST' = 'GET', form?: Record<string, string>) =>
  t.app.inject({
    method,
    url,
    headers: { cookie, ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
    payload: form ? new URLSearchParams(form).toString() : undefined,
  });

async function authorizeAndCallback(location: string, consent: 'allow' | 'deny' = 'allow') {
  const redirect = await server.authorize(location, { consent });
  expect(redirect.origin + redirect.pathname).toBe(callbackUrl);
  return t.app.inject({ method: 'GET', url: `/oauth/callback${redirect.search}` });
}

describe('connect sessions API', () => {
  it('creates a session with a link, reads and deletes it with its own token', async () => {
    const s = await newSession();
    expect(s.token).toMatch(/^terapi_cs_/);
    expect(Date.parse(s.expires_at) - Date.now()).toBeGreaterThan(29 * 60_000);
    const got = await t.app.inject({ method: 'GET', url: '/connect/session', headers: { authorization: `Bearer ${s.token}` } });
    expect(got.statusCode).toBe(200);
    expect(got.json().data).toMatchObject({
      end_user: { id: 'user-7' },
      allowed_integrations: ['fixture', 'sendgrid', 'zendesk'],
      is_reconnect: false,
    });
    // A session token is not an API key, and an API key is not a session token.
    expect((await t.call({ method: 'GET', url: '/integration', key: s.token })).statusCode).toBe(401);
    expect((await t.call({ method: 'GET', url: '/connect/session' })).statusCode).toBe(401);
    expect(
      (await t.app.inject({ method: 'DELETE', url: '/connect/session', headers: { authorization: `Bearer ${s.token}` } })).statusCode,
    ).toBe(204);
    expect((await page(s.cookie, '/connect')).statusCode).toBe(401);
  });

  it('rejects unknown integrations and bad redirect URLs naming the field', async () => {
    const unknown = await t.call({
      method: 'POST',
      url: '/connect/sessions',
      payload: { end_user: { id: 'u' }, allowed_integrations: ['nope'] },
    });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().details[0].field).toBe('allowed_integrations[0]');
    const badRedirect = await t.call({
      method: 'POST',
      url: '/connect/sessions',
      payload: { end_user: { id: 'u' }, redirect_url: 'http://evil.example.com/x' },
    });
    expect(badRedirect.statusCode).toBe(400);
    expect(badRedirect.json().details[0].field).toBe('redirect_url');
    const noUser = await t.call({ method: 'POST', url: '/connect/sessions', payload: {} });
    expect(noUser.statusCode).toBe(400);
    expect(noUser.json().details[0].field).toBe('end_user');
  });
});

describe('OAuth through the Connect page', () => {
  it('lists allowed integrations, runs the flow with state and PKCE, and stores a working connection', async () => {
    const s = await newSession({ allowed_origin: 'https://app.example.com' });
    const list = await page(s.cookie, '/connect');
    expect(list.statusCode).toBe(200);
    expect(list.body).toContain('/connect/i/fixture');
    expect(list.body).not.toContain('/connect/i/other');
    expect(list.body).not.toContain(s.token);

    const start = await page(s.cookie, '/connect/i/fixture');
    expect(start.statusCode).toBe(303);
    const authUrl = new URL(start.headers.location as string);
    expect(authUrl.origin + authUrl.pathname).toBe(server.authorizationUrl);
    expect(authUrl.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authUrl.searchParams.get('state')).toMatch(/^[\w-]{43}$/);
    expect(authUrl.searchParams.get('redirect_uri')).toBe(callbackUrl);
    expect(authUrl.searchParams.get('scope')).toBe('read');

    const done = await authorizeAndCallback(authUrl.toString());
    expect(done.statusCode).toBe(200);
    expect(done.body).toContain('is connected');
    expect(done.body).toContain('"https://app.example.com"');
    const connectionId = /data-connection-id="([^"]+)"/.exec(done.body)![1]!;

    const token = await t.call({ method: 'GET', url: `/auth/token/fixture/${connectionId}` });
    expect(token.statusCode).toBe(200);
    expect(await tokenWorks(server, token.json().access_token)).toBe(true);
    const conn = (await t.call({ method: 'GET', url: `/connections/${connectionId}?provider_config_key=fixture` })).json();
    expect(conn.end_user).toMatchObject({ id: 'user-7', email: 'u7@example.com' });
    expect(conn.tags).toEqual({ plan: 'pro' });
    const events = await queryRows<{ operation: string; success: boolean }>(
      t.db.database.db,
      sql`SELECT operation, success FROM events WHERE connection_id = ${connectionId}`,
    );
    expect(events).toEqual([{ operation: 'creation', success: true }]);

    // The same callback again: state is single-use.
    const replay = await t.app.inject({ method: 'GET', url: `/oauth/callback?state=${authUrl.searchParams.get('state')}&code=x` });
    expect(replay.statusCode).toBe(401);
    expect(replay.body).toContain('expired or was already used');
  });

  it('shows a clear page for denied consent, forged state and a missing code, and stores nothing', async () => {
    const count = async () => (await queryRows<{ n: number }>(t.db.database.db, sql`SELECT count(*)::int AS n FROM connections`))[0]!.n;
    const before = await count();
    const s = await newSession();
    const start = await page(s.cookie, '/connect/i/fixture');
    const denied = await authorizeAndCallback(start.headers.location as string, 'deny');
    expect(denied.statusCode).toBe(403);
    expect(denied.body).toContain('declined');
    const forged = await t.app.inject({ method: 'GET', url: '/oauth/callback?state=forged-state&code=abc' });
    expect(forged.statusCode).toBe(401);
    const noState = await t.app.inject({ method: 'GET', url: '/oauth/callback?code=abc' });
    expect(noState.statusCode).toBe(401);
    const again = await page(s.cookie, '/connect/i/fixture');
    const state = new URL(again.headers.location as string).searchParams.get('state');
    const noCode = await t.app.inject({ method: 'GET', url: `/oauth/callback?state=${state}` });
    expect(noCode.statusCode).toBe(502);
    expect(noCode.body).toContain('no authorization code');
    expect(await count()).toBe(before);
  });

  it('reports a token endpoint that answers with HTML', async () => {
    const s = await newSession();
    const start = await page(s.cookie, '/connect/i/fixture');
    const redirect = await server.authorize(start.headers.location as string);
    server.failNextTokenRequests(1, 500, '<html><body>Internal error</body></html>', 'text/html');
    const done = await t.app.inject({ method: 'GET', url: `/oauth/callback${redirect.search}` });
    expect(done.statusCode).toBe(502);
    expect(done.body).toContain('did not complete the authorization');
  });

  it('refuses integrations outside the session and expired sessions', async () => {
    const s = await newSession();
    const outside = await page(s.cookie, '/connect/i/other');
    expect(outside.statusCode).toBe(403);
    await t.db.database.db.execute(sql`UPDATE connect_sessions SET expires_at = now() - interval '1 minute'`);
    const expired = await page(s.cookie, '/connect/i/fixture');
    expect(expired.statusCode).toBe(401);
    expect(expired.body).toContain('expired');
  });

  it('asks for connection config fields (Zendesk subdomain) and validates them', async () => {
    const s = await newSession();
    const form = await page(s.cookie, '/connect/i/zendesk');
    expect(form.statusCode).toBe(200);
    expect(form.body).toContain('name="subdomain"');
    const bad = await page(s.cookie, '/connect/i/zendesk', 'POST', { subdomain: 'evil.com/x' });
    expect(bad.statusCode).toBe(400);
    expect(bad.body).toContain('aria-invalid="true"');
    const good = await page(s.cookie, '/connect/i/zendesk', 'POST', { subdomain: 'acme' });
    expect(good.statusCode).toBe(303);
    expect(good.headers.location).toContain(server.authorizationUrl);
  });

  it('re-authorizes an existing connection through a reconnect session', async () => {
    const s = await newSession();
    const first = await authorizeAndCallback((await page(s.cookie, '/connect/i/fixture')).headers.location as string);
    const connectionId = /data-connection-id="([^"]+)"/.exec(first.body)![1]!;
    await t.db.database.db.execute(
      sql`UPDATE connections SET error = '{"type":"auth","code":"refresh_revoked","message":"revoked","at":"2026-01-01T00:00:00Z"}' WHERE connection_id = ${connectionId}`,
    );
    expect((await t.call({ method: 'GET', url: `/auth/token/fixture/${connectionId}` })).statusCode).toBe(424);

    const r = await t.call({
      method: 'POST',
      url: '/connect/sessions/reconnect',
      payload: { connection_id: connectionId, integration_id: 'fixture' },
    });
    expect(r.statusCode).toBe(201);
    const open = await t.app.inject({
      method: 'GET',
      url: new URL(r.json().data.connect_link).pathname + new URL(r.json().data.connect_link).search,
    });
    const cookie = String(open.headers['set-cookie']).split(';')[0]!;
    const list = await page(cookie, '/connect');
    expect(list.statusCode).toBe(303);
    const start = await page(cookie, list.headers.location as string);
    const done = await authorizeAndCallback(start.headers.location as string);
    expect(done.statusCode).toBe(200);
    expect(done.body).toContain(`data-connection-id="${connectionId}"`);
    expect((await t.call({ method: 'GET', url: `/auth/token/fixture/${connectionId}` })).statusCode).toBe(200);
    const ops = await queryRows<{ operation: string }>(
      t.db.database.db,
      sql`SELECT operation FROM events WHERE connection_id = ${connectionId} ORDER BY id`,
    );
    expect(ops.map((o) => o.operation)).toEqual(['creation', 'override']);
  });
});

describe('API keys through the Connect page', () => {
  it('verifies the key with the provider: a rejected key stores nothing, a good one connects', async () => {
    const s = await newSession();
    const form = await page(s.cookie, '/connect/i/sendgrid');
    expect(form.body).toContain('name="api_key"');
    expect(form.body).toContain('type="password"');
    const empty = await page(s.cookie, '/connect/i/sendgrid', 'POST', { api_key: '' });
    expect(empty.statusCode).toBe(400);
    const wrong = await page(s.cookie, '/connect/i/sendgrid', 'POST', { api_key: 'bad-key' });
    expect(wrong.statusCode).toBe(400);
    expect(wrong.body).toContain('Invalid API key');
    expect(wrong.body).not.toContain('bad-key');
    const none = await t.call({ method: 'GET', url: '/connection?provider_config_key=sendgrid' });
    expect(none.json().connections).toEqual([]);
    const ok = await page(s.cookie, '/connect/i/sendgrid', 'POST', { api_key: 'good-key' });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).not.toContain('good-key');
    const connectionId = /data-connection-id="([^"]+)"/.exec(ok.body)![1]!;
    expect((await t.call({ method: 'GET', url: `/auth/token/sendgrid/${connectionId}` })).json()).toMatchObject({
      type: 'ApiKey',
      access_token: 'good-key',
    });
  });

  it('verifies imported API keys through the API when asked', async () => {
    const bad = await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: 'api-import', provider_config_key: 'sendgrid', credentials: { api_key: 'bad-key' }, verify: true },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().details[0].field).toBe('credentials');
    expect((await t.call({ method: 'GET', url: '/connection/api-import?provider_config_key=sendgrid' })).statusCode).toBe(404);
    const good = await t.call({
      method: 'POST',
      url: '/connections',
      payload: {
        connection_id: 'api-import',
        provider_config_key: 'sendgrid',
        credentials: { type: 'API_KEY', apiKey: 'good-key' },
        verify: true,
      },
    });
    expect(good.statusCode).toBe(201);
  });

  it('rejects a form posted from another origin', async () => {
    const s = await newSession();
    const r = await t.app.inject({
      method: 'POST',
      url: '/connect/i/sendgrid',
      headers: { cookie: s.cookie, origin: 'https://evil.example.com', 'content-type': 'application/x-www-form-urlencoded' },
      payload: 'api_key=good-key',
    });
    expect(r.statusCode).toBe(403);
  });
});
