import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { normalizeTokenBody } from '../../src/oauth/token-response.js';
import { DEFAULT_CLIENT, type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { tokenWorks } from '../helpers/oauth.js';

describe('token response quirks, one repair each', () => {
  const plain = {};
  it('parses form-encoded bodies', () => {
    const r = normalizeTokenBody(
      plain,
      'access_token=abc&scope=repo&token_type=bearer',
      'application/x-www-form-urlencoded; charset=utf-8',
    );
    expect(r?.body).toMatchObject({ access_token: 'abc', scope: 'repo', token_type: 'bearer' });
  });
  it('supplies a missing or odd token_type', () => {
    expect(normalizeTokenBody(plain, '{"access_token":"a"}', 'application/json')?.body.token_type).toBe('bearer');
    expect(normalizeTokenBody(plain, '{"access_token":"a","token_type":"bot"}', 'application/json')?.body.token_type).toBe('bearer');
  });
  it('reads tokens nested where the catalog says', () => {
    const r = normalizeTokenBody(
      { token_response_root: 'data' },
      '{"ok":true,"data":{"access_token":"n","expires_in":"60"}}',
      'application/json',
    );
    expect(r?.body).toMatchObject({ access_token: 'n', expires_in: 60 });
    expect(r?.raw).toEqual({ ok: true, data: { access_token: 'n', expires_in: '60' } });
  });
  it('uses a non-standard lifetime field the catalog names', () => {
    expect(
      normalizeTokenBody({ expires_in_field: 'expires' }, '{"access_token":"a","expires":"3600"}', 'application/json')?.body.expires_in,
    ).toBe(3600);
  });
  it('keeps id_token out of what openid-client validates, but in raw', () => {
    const r = normalizeTokenBody(plain, '{"access_token":"a","id_token":"x.y.z"}', 'application/json');
    expect(r?.body.id_token).toBeUndefined();
    expect(r?.raw.id_token).toBe('x.y.z');
  });
  it('refuses HTML and empty bodies', () => {
    expect(normalizeTokenBody(plain, '<html><body>Bad gateway</body></html>', 'text/html')).toBeUndefined();
    expect(normalizeTokenBody(plain, '', 'application/json')).toBeUndefined();
  });
});

describe('quirky token endpoint, end to end', () => {
  let t: TestApp;
  let quirky: Server;
  let quirkyUrl: string;
  let grants = 0;
  beforeAll(async () => {
    // A token endpoint in the style of old GitHub: form-encoded, no token_type, no refresh token rotation.
    quirky = createServer((req, res) => {
      grants++;
      req.resume();
      res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded' }).end(`access_token=quirky-${grants}&expires_in=7200`);
    });
    await new Promise<void>((r) => quirky.listen(0, '127.0.0.1', r));
    quirkyUrl = `http://127.0.0.1:${(quirky.address() as AddressInfo).port}/token`;
    t = await createTestApp();
    await t.call({
      method: 'POST',
      url: '/integration',
      payload: {
        provider_config_key: 'quirky',
        provider: 'oauth2',
        oauth_client_id: 'id',
        oauth_client_secret: 'secret',
        authorization_url: 'https://example.com/authorize',
        token_url: quirkyUrl,
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await new Promise((r) => quirky?.close(r));
  });

  it('refreshes against it and keeps the refresh token the provider did not resend', async () => {
    await t.call({
      method: 'POST',
      url: '/connection',
      payload: {
        connection_id: 'q',
        provider_config_key: 'quirky',
        credentials: { access_token: 'old', refresh_token: 'keep-me', expires_at: '2020-01-01T00:00:00Z' },
      },
    });
    const r = await t.call({ method: 'GET', url: '/auth/token/quirky/q' });
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ type: 'Bearer', access_token: 'quirky-1' });
    const again = await t.call({ method: 'GET', url: '/auth/token/quirky/q?force_refresh=true' });
    expect(again.json().access_token).toBe('quirky-2');
    const stored = await t.call({ method: 'GET', url: '/connections/q?provider_config_key=quirky&refresh_token=true' });
    expect(stored.json().credentials.refresh_token).toBe('keep-me');
  });
});

describe('client credentials (OAUTH2_CC)', () => {
  let t: TestApp;
  let server: OAuthServer;
  beforeAll(async () => {
    server = await startOAuthServer({ accessTokenTtlSeconds: 3600 });
    t = await createTestApp();
    await t.call({
      method: 'POST',
      url: '/integration',
      payload: {
        provider_config_key: 'machine',
        provider: 'oauth2-cc',
        oauth_client_id: DEFAULT_CLIENT.client_id,
        oauth_client_secret: DEFAULT_CLIENT.client_secret,
        token_url: server.tokenUrl,
      },
    });
  });
  afterAll(async () => {
    await t?.close();
    await server?.close();
  });

  it('obtains the token itself, serves it until it nears expiry, and renews it', async () => {
    const created = await t.call({ method: 'POST', url: '/connection', payload: { connection_id: 'svc', provider_config_key: 'machine' } });
    expect(created.statusCode).toBe(200);
    expect(created.json().credentials).toEqual({ type: 'oauth2_cc' });
    server.resetCounters();
    const first = await t.call({ method: 'GET', url: '/auth/token/machine/svc' });
    expect(first.statusCode).toBe(200);
    expect(await tokenWorks(server, first.json().access_token)).toBe(true);
    expect((await t.call({ method: 'GET', url: '/auth/token/machine/svc' })).json().access_token).toBe(first.json().access_token);
    expect(server.grants.client_credentials).toBe(1);
    const forced = await t.call({ method: 'GET', url: '/auth/token/machine/svc?force_refresh=true' });
    expect(forced.json().access_token).not.toBe(first.json().access_token);
    expect(server.grants.client_credentials).toBe(2);
  });

  it('answers 424 when the client is rejected', async () => {
    await t.call({
      method: 'POST',
      url: '/connection',
      payload: {
        connection_id: 'bad',
        provider_config_key: 'machine',
        credentials: { client_id: DEFAULT_CLIENT.client_id, client_secret: 'wrong-secret' },
      },
    });
    const r = await t.call({ method: 'GET', url: '/auth/token/machine/bad' });
    expect(r.statusCode).toBe(424);
  });
});
