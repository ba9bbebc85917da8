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
    const incoming = lines.map((l) => JSON.parse(l) as { req?: { url?: string } }).find((l) => l.req?.url?.startsWith('/providers'));
    expect(incoming?.req?.url).toMatch(/redacted/);
    expect(incoming?.req?.url).toContain('category=crm');
    expect(incoming?.req?.url).toContain('provider_config_key=gh-prod');
    expect(lines.join('\n')).not.toContain(secret);
  });

  it('leaves a URL without credentials as it is', async () => {
    const before = t.logs.length;
    await t.call({ method: 'GET', url: '/providers?category=crm&cursor=abc' });
    const urls = t.logs
      .slice(before)
      .map((l) => (JSON.parse(l) as { req?: { url?: string } }).req?.url)
      .filter(Boolean);
    expect(urls).toContain('/providers?category=crm&cursor=abc');
  });
});
