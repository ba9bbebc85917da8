import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, defaultTestConfig, type TestApp } from '../helpers/app.js';

// The test configuration allows private egress (fixtures listen on loopback); `strict` is the
// production default on the same database and environment.
let lenient: TestApp;
let strict: TestApp;
beforeAll(async () => {
  lenient = await createTestApp();
  strict = await createTestApp({
    db: lenient.db,
    vault: lenient.vault,
    config: { egress: { ...defaultTestConfig.egress, allowPrivateNetworks: false } },
  });
});
afterAll(async () => {
  await strict?.close();
  await lenient?.close();
});

const generic = (key: string, urls: Record<string, string>) => ({
  provider_config_key: key,
  provider: 'oauth2',
  oauth_client_id: 'client',
  oauth_client_secret: 'secret',
  ...urls,
});
const asStrict = (opts: Parameters<TestApp['call']>[0]) => strict.call({ ...opts, key: lenient.env.key });

describe('OAuth endpoint URLs of an integration', () => {
  it('refuses plain-http authorization and token URLs when private egress is not allowed, naming the field', async () => {
    const auth = await asStrict({
      method: 'POST',
      url: '/integration',
      payload: generic('gen-http', { authorization_url: 'http://auth.example.com/authorize', token_url: 'https://auth.example.com/token' }),
    });
    expect(auth.statusCode, auth.body).toBe(400);
    expect(auth.json().details[0].field).toBe('authorization_url');
    expect(auth.json().message).toContain('https');
    const token = await asStrict({
      method: 'POST',
      url: '/integrations',
      payload: {
        unique_key: 'gen-http',
        provider: 'oauth2',
        credentials: { type: 'OAUTH2', client_id: 'c', client_secret: 's' },
        authorization_url: 'https://auth.example.com/authorize',
        token_url: 'http://auth.example.com/token',
      },
    });
    expect(token.statusCode, token.body).toBe(400);
    expect(token.json().details[0].field).toBe('token_url');
    expect((await asStrict({ method: 'GET', url: '/integration/gen-http' })).statusCode).toBe(404);
  });

  it('refuses them on update too, and accepts https', async () => {
    const created = await asStrict({
      method: 'POST',
      url: '/integration',
      payload: generic('gen-https', {
        authorization_url: 'https://auth.example.com/authorize',
        token_url: 'https://auth.example.com/token',
      }),
    });
    expect(created.statusCode, created.body).toBe(200);
    const patch = await asStrict({
      method: 'PATCH',
      url: '/integrations/gen-https',
      payload: { token_url: 'http://auth.example.com/token' },
    });
    expect(patch.statusCode, patch.body).toBe(400);
    expect(patch.json().details[0].field).toBe('token_url');
  });

  it('refuses a plain-http revocation_url (it would carry the client secret and the refresh token in clear)', async () => {
    const r = await asStrict({
      method: 'POST',
      url: '/integration',
      payload: generic('gen-revoke-http', {
        authorization_url: 'https://auth.example.com/authorize',
        token_url: 'https://auth.example.com/token',
        revocation_url: 'http://169.254.169.254/revoke',
      }),
    });
    expect(r.statusCode, r.body).toBe(400);
    expect(r.json().details[0].field).toBe('revocation_url');
  });

  it('an update changes only the URLs it names; the others stay', async () => {
    const created = await asStrict({
      method: 'POST',
      url: '/integration',
      payload: generic('gen-partial', {
        authorization_url: 'https://auth.example.com/authorize',
        token_url: 'https://auth.example.com/token',
      }),
    });
    expect(created.statusCode, created.body).toBe(200);
    const patch = await asStrict({
      method: 'PATCH',
      url: '/integration/gen-partial',
      payload: { revocation_url: 'https://auth.example.com/revoke' },
    });
    expect(patch.statusCode, patch.body).toBe(200);
    const got = (await asStrict({ method: 'GET', url: '/integration/gen-partial' })).json();
    expect(JSON.stringify(got)).toContain('https://auth.example.com/token');
    expect(JSON.stringify(got)).toContain('https://auth.example.com/authorize');
    expect(JSON.stringify(got)).toContain('https://auth.example.com/revoke');
  });

  it('accepts plain http when private egress is allowed (on-prem and test OAuth servers)', async () => {
    const r = await lenient.call({
      method: 'POST',
      url: '/integration',
      payload: generic('gen-local', { authorization_url: 'http://127.0.0.1:9/authorize', token_url: 'http://127.0.0.1:9/token' }),
    });
    expect(r.statusCode, r.body).toBe(200);
  });
});
