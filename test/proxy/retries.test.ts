/**
 * The proxy's retries (backoff honouring Retry-After) and its URL policy: Base-Url-Override only
 * where the integration allows it and only to addresses the egress policy allows.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { startProxyTarget, type ProxyTarget } from '../fixtures/providers/proxy-target.js';

let t: TestApp;
let target: ProxyTarget;

const call = (connectionId: string, key: string, url: string, headers: Record<string, string> = {}) =>
  t.call({ method: 'GET', url, headers: { 'connection-id': connectionId, 'provider-config-key': key, ...headers } });

beforeAll(async () => {
  target = await startProxyTarget();
  // The fake provider is reachable as an allowed host; every other private address is refused.
  t = await createTestApp({
    config: {
      egress: { allowPrivateNetworks: false, allowedHosts: ['127.0.0.1'], timeoutMs: 5000 },
      proxy: { timeoutMs: 3000, bodyLimitBytes: 1 << 20 },
    },
  });
  const generic = await t.call({
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: 'api',
      provider: 'oauth2',
      oauth_client_id: 'client',
      oauth_client_secret: 'secret',
      authorization_url: 'https://auth.example.com/authorize',
      token_url: 'https://auth.example.com/token',
      api_base_url: target.url,
    },
  });
  expect(generic.statusCode, generic.body).toBe(200);
  const plain = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { provider_config_key: 'api', connection_id: 'plain', credentials: { type: 'OAUTH2', access_token: 'plain-tok' } },
  });
  expect(plain.statusCode, plain.body).toBe(200);
  const gh = await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' },
  });
  expect(gh.statusCode, gh.body).toBe(200);
  const c = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { provider_config_key: 'gh', connection_id: 'u', credentials: { type: 'OAUTH2', access_token: 'x' } },
  });
  expect(c.statusCode, c.body).toBe(200);
});
afterAll(async () => {
  await t?.close();
  await target?.close();
});

describe('retries', () => {
  it('Retries: 429 answers are retried with Retry-After honoured', async () => {
    target.expect = null;
    const started = Date.now();
    const r = await call('plain', 'api', '/proxy/flaky/a?fail=2&status=429&retry_after=1', { retries: '3' });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ attempt: 3 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
  });

  it('without Retries the 429 comes back as the provider sent it', async () => {
    const r = await call('plain', 'api', '/proxy/flaky/b?fail=1&status=429&retry_after=7');
    expect(r.statusCode).toBe(429);
    expect(r.headers['retry-after']).toBe('7');
    expect(r.headers['x-terapi-error']).toBeUndefined();
  });

  it('retries run out: the last answer comes back; Retry-On adds statuses', async () => {
    const out = await call('plain', 'api', '/proxy/flaky/c?fail=5&status=503&retry_after=0', { retries: '1' });
    expect(out.statusCode).toBe(503);
    const on = await call('plain', 'api', '/proxy/flaky/d?fail=1&status=409&retry_after=0', { retries: '1', 'retry-on': '409' });
    expect(on.statusCode, on.body).toBe(200);
    const off = await call('plain', 'api', '/proxy/flaky/e?fail=1&status=409&retry_after=0', { retries: '1' });
    expect(off.statusCode).toBe(409);
  });
});

describe('base URL override and egress policy', () => {
  it('Base-Url-Override where the provider allows it (the generic provider)', async () => {
    target.expect = null;
    const r = await call('plain', 'api', '/proxy/me', { 'base-url-override': `${target.url}/echo/over` });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ path: '/echo/over/me' });
    // Empty (Nango's SDK always sends the header) means none.
    const none = await call('plain', 'api', '/proxy/echo/x', { 'base-url-override': '' });
    expect(none.statusCode, none.body).toBe(200);
  });

  it('Base-Url-Override refused where the catalog fixes the base URL, and to private or metadata addresses', async () => {
    const before = target.requests.length;
    const fixed = await call('u', 'gh', '/proxy/user', { 'base-url-override': target.url });
    expect(fixed.statusCode).toBe(400);
    expect(fixed.headers['x-terapi-error']).toBe('true');
    expect(fixed.json().message).toContain('base-url-override');
    for (const url of ['http://169.254.169.254/latest', 'http://10.0.0.1', 'http://[::1]:8080', 'http://localhost:1']) {
      const r = await call('plain', 'api', '/proxy/x', { 'base-url-override': url });
      expect(r.statusCode, `${url}: ${r.body}`).toBe(400);
      expect(r.headers['x-terapi-error']).toBe('true');
      expect(r.json()).toMatchObject({ error: 'invalid_request' });
      expect(r.json().message).toContain('base-url-override');
    }
    const bad = await call('plain', 'api', '/proxy/x', { 'base-url-override': 'file:///etc/passwd' });
    expect(bad.statusCode).toBe(400);
    expect(target.requests.length).toBe(before);
  });

  it('a catalog base URL on a private address: 403 egress_denied', async () => {
    const i = await t.call({
      method: 'POST',
      url: '/integration',
      payload: {
        provider_config_key: 'internal',
        provider: 'oauth2',
        authorization_url: 'https://auth.example.com/authorize',
        token_url: 'https://auth.example.com/token',
        api_base_url: 'http://10.1.2.3/api',
      },
    });
    expect(i.statusCode, i.body).toBe(200);
    const c = await t.call({
      method: 'POST',
      url: '/connection',
      payload: { provider_config_key: 'internal', connection_id: 'u', credentials: { type: 'OAUTH2', access_token: 'x' } },
    });
    expect(c.statusCode, c.body).toBe(200);
    const r = await call('u', 'internal', '/proxy/x');
    expect(r.statusCode, r.body).toBe(403);
    expect(r.json()).toMatchObject({ error: 'egress_denied' });
    expect(r.headers['x-terapi-error']).toBe('true');
  });
});
