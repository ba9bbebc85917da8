/**
 * The proxy through the real app against a local fake provider: credentials placed per the
 * catalog, bodies of every kind passed untouched, the provider's answers returned unchanged, and
 * Terapi's own failures marked as such.
 */
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { startProxyTarget, type ProxyTarget } from '../fixtures/providers/proxy-target.js';

let t: TestApp;
let target: ProxyTarget;

const gh = { 'connection-id': 'user-42', 'provider-config-key': 'github' };

async function integration(key: string, provider: string, extra: Record<string, unknown> = {}) {
  const r = await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: key, provider, api_base_url: target.url, ...extra },
  });
  expect(r.statusCode, r.body).toBe(200);
}
async function connection(key: string, id: string, credentials: Record<string, unknown>, extra: Record<string, unknown> = {}) {
  const r = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { provider_config_key: key, connection_id: id, credentials, ...extra },
  });
  expect(r.statusCode, r.body).toBe(200);
}
const echoed = (r: { json: () => unknown }) =>
  r.json() as { method: string; path: string; query: string; headers: Record<string, string>; body: string; bytes: number };

beforeAll(async () => {
  target = await startProxyTarget();
  t = await createTestApp({ config: { allowProviderUrlOverrides: true, proxy: { timeoutMs: 1500, bodyLimitBytes: 2 * 1024 * 1024 } } });
  await integration('github', 'github', { oauth_client_id: 'id', oauth_client_secret: 'secret' });
  await connection('github', 'user-42', { type: 'OAUTH2', access_token: 'gho_live' });
  await integration('postmark', 'postmark');
  await connection('postmark', 'acct', { type: 'API_KEY', api_key: 'pm-key' });
  await integration('serpapi', 'serpapi');
  await connection('serpapi', 'acct', { type: 'API_KEY', api_key: 'serp key&=' });
  await integration('aircall', 'aircall');
  await connection('aircall', 'acct', { type: 'BASIC', username: 'ada', password: 'p@ss:word' });
});
beforeEach(() => {
  target.expect = null;
});
afterAll(async () => {
  await t?.close();
  await target?.close();
});

describe('credentials and base URL', () => {
  it('OAuth: the path, raw query and a Bearer token; the caller Authorization never goes out', async () => {
    target.expect = { header: ['authorization', 'Bearer gho_live'] };
    const r = await t.call({ method: 'GET', url: '/proxy/echo/user/repos?per_page=2&q=a%20b+c&q=d', headers: gh });
    expect(r.statusCode, r.body).toBe(200);
    const e = echoed(r);
    expect(e).toMatchObject({ method: 'GET', path: '/echo/user/repos', query: '?per_page=2&q=a%20b+c&q=d' });
    expect(e.headers.authorization).toBe('Bearer gho_live');
    expect(JSON.stringify(e.headers)).not.toContain(t.env.key);
    expect(e.headers['connection-id']).toBeUndefined();
    expect(r.headers['x-terapi-error']).toBeUndefined();
  });

  it('/v1/proxy is the same door', async () => {
    target.expect = { header: ['authorization', 'Bearer gho_live'] };
    const r = await t.call({ method: 'GET', url: '/v1/proxy/echo/v1', headers: gh });
    expect(r.statusCode, r.body).toBe(200);
    expect(echoed(r).path).toBe('/echo/v1');
  });

  it('API key in a named header', async () => {
    target.expect = { header: ['x-postmark-server-token', 'pm-key'] };
    const r = await t.call({
      method: 'GET',
      url: '/proxy/echo/server',
      headers: { 'connection-id': 'acct', 'provider-config-key': 'postmark' },
    });
    expect(r.statusCode, r.body).toBe(200);
    expect(echoed(r).headers.authorization).toBeUndefined();
  });

  it('API key in the query, replacing a caller parameter of the same name and keeping the rest as sent', async () => {
    target.expect = { query: ['api_key', 'serp key&='] };
    const r = await t.call({
      method: 'GET',
      url: '/proxy/echo/search.json?q=coffee%2Btea&api_key=forged',
      headers: { 'connection-id': 'acct', 'provider-config-key': 'serpapi' },
    });
    expect(r.statusCode, r.body).toBe(200);
    expect(echoed(r).query).toBe('?q=coffee%2Btea&api_key=serp%20key%26%3D');
  });

  it('basic auth', async () => {
    target.expect = { header: ['authorization', `Basic ${Buffer.from('ada:p@ss:word').toString('base64')}`] };
    const r = await t.call({
      method: 'GET',
      url: '/proxy/echo/v1/ping',
      headers: { 'connection-id': 'acct', 'provider-config-key': 'aircall' },
    });
    expect(r.statusCode, r.body).toBe(200);
  });

  it("the base URL from the connection's config (Salesforce instance_url)", async () => {
    const r0 = await t.call({
      method: 'POST',
      url: '/integration',
      payload: { provider_config_key: 'sf', provider: 'salesforce', oauth_client_id: 'id', oauth_client_secret: 's' },
    });
    expect(r0.statusCode, r0.body).toBe(200);
    await connection(
      'sf',
      'org',
      { type: 'OAUTH2', access_token: 'sf-tok' },
      { connection_config: { instance_url: `${target.url}/echo/sf` } },
    );
    target.expect = { header: ['authorization', 'Bearer sf-tok'] };
    const r = await t.call({
      method: 'GET',
      url: '/proxy/services/data/v60.0/sobjects',
      headers: { 'connection-id': 'org', 'provider-config-key': 'sf' },
    });
    expect(r.statusCode, r.body).toBe(200);
    expect(echoed(r).path).toBe('/echo/sf/services/data/v60.0/sobjects');
  });
});

describe('bodies and headers', () => {
  it('every method with JSON, form and binary bodies, untouched, with Nango-Proxy- headers', async () => {
    target.expect = null;
    const binary = Buffer.from([0, 1, 2, 255, 254, 13, 10, 0]);
    for (const method of ['POST', 'PUT', 'PATCH', 'DELETE'] as const) {
      for (const [type, payload] of [
        ['application/json', '{"a": 1,  "b":[true]}'],
        ['application/x-www-form-urlencoded', 'a=1&b=%20x&b=y'],
        ['application/octet-stream', binary],
      ] as const) {
        const r = await t.call({
          method,
          url: '/proxy/echo/items',
          headers: { ...gh, 'content-type': type, 'Nango-Proxy-X-Api-Version': '2024-01', 'nango-proxy-accept': 'application/vnd.x+json' },
          payload,
        });
        expect(r.statusCode, r.body).toBe(200);
        const e = echoed(r);
        expect(e.method).toBe(method);
        expect(Buffer.from(e.body, 'latin1').equals(Buffer.from(payload))).toBe(true);
        expect(e.headers['content-type']).toBe(type);
        expect(e.headers['x-api-version']).toBe('2024-01');
        expect(e.headers.accept).toBe('application/vnd.x+json');
        expect(e.headers['nango-proxy-x-api-version']).toBeUndefined();
      }
    }
  });

  it('a POST without content type or body', async () => {
    const r = await t.call({ method: 'POST', url: '/proxy/echo/empty', headers: gh });
    expect(r.statusCode, r.body).toBe(200);
    expect(echoed(r)).toMatchObject({ method: 'POST', bytes: 0 });
  });

  it("the provider's status, body and headers come back unchanged, without hop-by-hop and CORS headers", async () => {
    for (const status of [201, 404, 422, 500]) {
      const r = await t.call({ method: 'GET', url: `/proxy/status/${status}`, headers: gh });
      expect(r.statusCode).toBe(status);
      expect(r.json()).toEqual({ message: `answered ${status}` });
      expect(r.headers['x-custom']).toBe('kept');
      expect(r.headers['x-hop']).toBeUndefined();
      expect(r.headers['keep-alive']).toBeUndefined();
      expect(r.headers['access-control-allow-origin']).toBeUndefined();
      expect(r.headers['x-terapi-error']).toBeUndefined();
    }
    const none = await t.call({ method: 'DELETE', url: '/proxy/status/204', headers: gh });
    expect(none.statusCode).toBe(204);
    expect(none.body).toBe('');
  });

  it('an HTML answer comes back as HTML', async () => {
    const r = await t.call({ method: 'GET', url: '/proxy/html', headers: gh });
    expect(r.statusCode).toBe(200);
    expect(r.headers['content-type']).toContain('text/html');
    expect(r.body).toContain('<h1>Login</h1>');
  });

  it('without Decompress a gzip body passes encoded with its length; with it, decoded without them', async () => {
    const raw = await t.call({ method: 'GET', url: '/proxy/gzip', headers: { ...gh, 'accept-encoding': 'gzip' } });
    expect(raw.headers['content-encoding']).toBe('gzip');
    expect(Number(raw.headers['content-length'])).toBe(raw.rawPayload.length);
    expect(JSON.parse(gunzipSync(raw.rawPayload).toString())).toMatchObject({ compressed: true });

    const decoded = await t.call({ method: 'GET', url: '/proxy/gzip', headers: { ...gh, decompress: 'true' } });
    expect(decoded.headers['content-encoding']).toBeUndefined();
    expect(decoded.headers['content-length']).toBeUndefined();
    expect(decoded.json()).toMatchObject({ compressed: true });
  });
});

describe('refresh on 401', () => {
  it('a provider 401 on a token Terapi believed valid: one forced refresh, one more attempt with the new token', async () => {
    const i = await t.call({
      method: 'POST',
      url: '/integration',
      payload: {
        provider_config_key: 'rotating',
        provider: 'oauth2',
        oauth_client_id: 'client',
        oauth_client_secret: 'secret',
        authorization_url: `${target.url}/oauth/authorize`,
        token_url: `${target.url}/oauth/token`,
        api_base_url: target.url,
      },
    });
    expect(i.statusCode, i.body).toBe(200);
    const expires = new Date(Date.now() + 3600_000).toISOString();
    await connection('rotating', 'r', { type: 'OAUTH2', access_token: 'tok-1', refresh_token: 'refresh-1', expires_at: expires });
    const headers = { 'connection-id': 'r', 'provider-config-key': 'rotating' };
    target.refreshes = 0;
    // The provider revoked tok-1 early: only the token the next refresh hands out works.
    target.expect = { header: ['authorization', 'Bearer tok-2'] };
    const payload = '{"kept": "for the second attempt"}';
    const r = await t.call({ method: 'POST', url: '/proxy/echo/me', headers: { ...headers, 'content-type': 'application/json' }, payload });
    expect(r.statusCode, r.body).toBe(200);
    expect(echoed(r)).toMatchObject({ body: payload, headers: { authorization: 'Bearer tok-2' } });
    expect(target.refreshes).toBe(1);
    const again = await t.call({ method: 'GET', url: '/proxy/echo/me', headers });
    expect(again.statusCode).toBe(200);
    expect(target.refreshes).toBe(1);

    // Still 401 after the refresh: the provider's answer comes back, with no third attempt.
    target.expect = { header: ['authorization', 'Bearer never'] };
    target.acceptRefreshed = false;
    const before = target.requests.length;
    const denied = await t.call({ method: 'GET', url: '/proxy/echo/me', headers });
    expect(denied.statusCode).toBe(401);
    expect(denied.json()).toEqual({ message: 'Bad credentials' });
    expect(denied.headers['x-terapi-error']).toBeUndefined();
    expect(target.requests.slice(before).map((q) => q.path)).toEqual(['/echo/me', '/oauth/token', '/echo/me']);
    target.acceptRefreshed = true;
  });

  it('no refresh token: the 401 comes back as the provider sent it', async () => {
    target.expect = { header: ['authorization', 'Bearer other'] };
    const r = await t.call({ method: 'GET', url: '/proxy/echo', headers: gh });
    expect(r.statusCode).toBe(401);
    expect(r.headers['www-authenticate']).toBe('Bearer');
    expect(r.headers['x-terapi-error']).toBeUndefined();
  });
});

describe("Terapi's own failures", () => {
  const own = (r: { statusCode: number; headers: Record<string, unknown>; json: () => unknown }, status: number, error?: string) => {
    expect(r.statusCode).toBe(status);
    expect(r.headers['x-terapi-error']).toBe('true');
    const body = r.json() as { error: string; message: string };
    expect(typeof body.message).toBe('string');
    if (error) expect(body.error).toBe(error);
    return body;
  };

  it('missing headers: 400 naming which', async () => {
    const before = target.requests.length;
    expect(own(await t.call({ method: 'GET', url: '/proxy/echo', headers: { 'provider-config-key': 'github' } }), 400).message).toContain(
      'connection-id',
    );
    expect(own(await t.call({ method: 'GET', url: '/proxy/echo', headers: { 'connection-id': 'user-42' } }), 400).message).toContain(
      'provider-config-key',
    );
    expect(own(await t.call({ method: 'GET', url: '/proxy/echo', headers: { ...gh, retries: 'many' } }), 400).message).toContain('retries');
    expect(target.requests.length).toBe(before);
  });

  it('no key: 401, marked', async () => {
    own(await t.call({ method: 'GET', url: '/proxy/echo', headers: gh, key: null }), 401);
  });

  it('unknown connection or integration: 404 saying which', async () => {
    expect(own(await t.call({ method: 'GET', url: '/proxy/echo', headers: { ...gh, 'connection-id': 'nobody' } }), 404).message).toContain(
      'Connection "nobody"',
    );
    expect(
      own(await t.call({ method: 'GET', url: '/proxy/echo', headers: { ...gh, 'provider-config-key': 'gitlab' } }), 404).message,
    ).toContain('Integration "gitlab"');
  });

  it("another environment's connection is unknown", async () => {
    const other = await t.newEnvironment();
    own(await t.call({ method: 'GET', url: '/proxy/echo', headers: gh, key: other.key }), 404);
  });

  it('paths that try to leave the base URL: 400 before any provider call', async () => {
    const app = t.app;
    if (!app.server.listening) await app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = app.server.address() as AddressInfo;
    const before = target.requests.length;
    for (const path of [
      '/proxy/../admin',
      '/proxy/a/%2e%2e/b',
      '/proxy//evil.example/x',
      '/proxy/https://evil.example/x',
      '/proxy/a\\b',
      '/v1/proxy/./x',
    ]) {
      const res = await new Promise<{ status: number; marker: unknown; body: string }>((resolve, reject) => {
        const req = httpRequest(
          { host: '127.0.0.1', port, path, method: 'GET', headers: { ...gh, authorization: `Bearer ${t.env.key}` } },
          (res) => {
            let body = '';
            res.on('data', (c: Buffer) => (body += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, marker: res.headers['x-terapi-error'], body }));
          },
        );
        req.on('error', reject);
        req.end();
      });
      expect(res.status, `${path}: ${res.body}`).toBe(400);
      expect(res.marker).toBe('true');
      expect(JSON.parse(res.body)).toMatchObject({ error: 'invalid_request' });
    }
    expect(target.requests.length).toBe(before);
  });

  it('a connection whose grant was revoked: 424 without calling the provider', async () => {
    await connection('github', 'revoked', {
      type: 'OAUTH2',
      access_token: 'dead',
      refresh_token: 'dead-r',
      expires_at: new Date(Date.now() - 1000).toISOString(),
    });
    await t.db.database.db.execute(
      `UPDATE connections SET error = '{"type":"auth","code":"invalid_grant","message":"revoked","at":"2024-01-01T00:00:00Z"}'::jsonb WHERE connection_id = 'revoked'`,
    );
    const before = target.requests.length;
    own(
      await t.call({ method: 'GET', url: '/proxy/echo', headers: { ...gh, 'connection-id': 'revoked' } }),
      424,
      'connection_needs_reauthorization',
    );
    expect(target.requests.length).toBe(before);
  });

  it('a provider that hangs: 504 after the timeout', async () => {
    const started = Date.now();
    own(await t.call({ method: 'GET', url: '/proxy/hang', headers: gh }), 504, 'provider_timeout');
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('a provider that cannot be reached: 502', async () => {
    await integration('down', 'github', { api_base_url: 'http://127.0.0.1:1' });
    await connection('down', 'x', { type: 'OAUTH2', access_token: 't' });
    own(
      await t.call({ method: 'GET', url: '/proxy/echo', headers: { 'connection-id': 'x', 'provider-config-key': 'down' } }),
      502,
      'provider_unreachable',
    );
  });

  it('a body over the limit: 413', async () => {
    own(
      await t.call({
        method: 'POST',
        url: '/proxy/echo',
        headers: { ...gh, 'content-type': 'application/octet-stream' },
        payload: Buffer.alloc(3 * 1024 * 1024),
      }),
      413,
      'payload_too_large',
    );
  });
});
