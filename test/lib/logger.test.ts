/**
 * Credentials a client puts in the query string never reach the request log in clear.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

describe('request log', () => {
  it.each([
    'key',
    'api_key',
    'apikey',
    'apiKey',
    'api-key',
    'hapikey',
    'secret_key',
    'access_token',
    'refresh_token',
    'token',
    'session_token',
    'client_secret',
    'password',
    'x_auth_token',
    'session%5Ftoken',
  ])('redacts %s in the logged URL and keeps the other parameters', async (name) => {
    const secret = `sek_${randomBytes(12).toString('hex')}`;
    const before = t.logs.length;
    const res = await t.call({ method: 'GET', url: `/providers?category=crm&${name}=${secret}&provider_config_key=gh-prod`, key: null });
    expect(res.statusCode).toBe(401);
    const lines = t.logs.slice(before);
    const access = lines.map((l) => JSON.parse(l) as { url?: string }).find((l) => l.url?.startsWith('/providers'));
    expect(access?.url).toMatch(/redacted/);
    expect(access?.url).toContain('category=crm');
    expect(access?.url).toContain('provider_config_key=gh-prod');
    expect(lines.join('\n')).not.toContain(secret);
  });

  it('leaves a URL without credentials as it is', async () => {
    const before = t.logs.length;
    await t.call({ method: 'GET', url: '/providers?category=crm&cursor=abc' });
    const urls = t.logs
      .slice(before)
      .map((l) => (JSON.parse(l) as { url?: string }).url)
      .filter(Boolean);
    expect(urls).toContain('/providers?category=crm&cursor=abc');
  });

  it('writes one access line per request: method, route, status, duration, request id', async () => {
    const before = t.logs.length;
    const res = await t.call({
      method: 'GET',
      url: '/connection/nope?provider_config_key=gh',
      headers: { 'x-request-id': 'req-access-1' },
    });
    expect(res.statusCode).toBe(404);
    const lines = t.logs.slice(before).map((l) => JSON.parse(l) as Record<string, unknown>);
    const access = lines.filter((l) => l.reqId === 'req-access-1');
    expect(access).toHaveLength(1);
    expect(access[0]).toMatchObject({
      level: 30,
      msg: 'request',
      method: 'GET',
      url: '/connection/nope?provider_config_key=gh',
      route: '/connection/:connection_id',
      status: 404,
    });
    expect(typeof access[0]!.ms).toBe('number');
    // The secret key sent in the Authorization header is nowhere in the logs.
    expect(t.logs.slice(before).join('\n')).not.toContain(t.env.key);
  });

  it('writes no access line for probes (they log at warn)', async () => {
    const before = t.logs.length;
    await t.app.inject({ method: 'GET', url: '/health' });
    expect(t.logs.slice(before).filter((l) => l.includes('"/health"'))).toEqual([]);
  });
});
