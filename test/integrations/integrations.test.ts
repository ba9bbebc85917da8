import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { createVault } from '../../src/lib/vault.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

const github = {
  provider_config_key: 'github-prod',
  provider: 'github',
  oauth_client_id: 'Iv1.client',
  oauth_client_secret: 'gh-client-secret-value',
  oauth_scopes: 'repo, read:user',
};

describe('integrations (seed 001 shapes)', () => {
  it('creates, reads, lists and deletes an integration', async () => {
    const created = await t.call({ method: 'POST', url: '/integration', payload: github });
    expect(created.statusCode).toBe(200);
    const body = created.json();
    expect(Object.keys(body).sort()).toEqual(['connection_count', 'created_at', 'provider', 'unique_key', 'updated_at']);
    expect(body).toMatchObject({ unique_key: 'github-prod', provider: 'github', connection_count: 0 });

    const got = await t.call({ method: 'GET', url: '/integration/github-prod' });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject(body);

    const list = await t.call({ method: 'GET', url: '/integration' });
    expect(list.json().integrations.map((i: { unique_key: string }) => i.unique_key)).toEqual(['github-prod']);

    const v1 = await t.call({ method: 'GET', url: '/v1/integrations/github-prod' });
    expect(v1.json()).toEqual(got.json());

    const del = await t.call({ method: 'DELETE', url: '/integration/github-prod' });
    expect(del.statusCode).toBe(204);
    expect(del.body).toBe('');
    expect((await t.call({ method: 'GET', url: '/integration/github-prod' })).statusCode).toBe(404);
  });

  it('counts connections and deletes them with the integration', async () => {
    await t.call({ method: 'POST', url: '/v1/integrations', payload: { ...github, provider_config_key: 'gh-count' } });
    for (const id of ['a', 'b', 'c']) {
      const r = await t.call({
        method: 'POST',
        url: '/connection',
        payload: { connection_id: id, provider_config_key: 'gh-count', credentials: { access_token: `tok-${id}` } },
      });
      expect(r.statusCode).toBe(200);
    }
    expect((await t.call({ method: 'GET', url: '/integration/gh-count' })).json().connection_count).toBe(3);
    expect((await t.call({ method: 'DELETE', url: '/v1/integrations/gh-count' })).statusCode).toBe(204);
    const [left] = await queryRows<{ n: number }>(t.db.database.db, sql`SELECT count(*)::int AS n FROM connections`);
    expect(left!.n).toBe(0);
    expect((await t.call({ method: 'GET', url: '/connection?provider_config_key=gh-count' })).json().connections).toEqual([]);
  });

  it('stores the client secret and secrets encrypted, params plain', async () => {
    const r = await t.call({
      method: 'POST',
      url: '/integration',
      payload: {
        provider_config_key: 'stripe-live',
        provider: 'stripe',
        params: { api_version: '2024-09-30' },
        secrets: { webhook_secret: 'whsec_plaintext_marker' },
      },
    });
    expect(r.statusCode).toBe(200);
    const [row] = await queryRows<{ params: string; secrets_enc: string }>(
      t.db.database.db,
      sql`SELECT params::text AS params, secrets_enc FROM integrations WHERE unique_key = 'stripe-live'`,
    );
    if (!row) throw new Error('integration row missing');
    expect(row.params).toContain('2024-09-30');
    expect(row.secrets_enc).toMatch(/^v1:test:/);
    expect(row.secrets_enc).not.toContain('whsec_plaintext_marker');
    const nango = (await t.call({ method: 'GET', url: '/integrations/stripe-live' })).json().data;
    expect(nango).toMatchObject({ params: { api_version: '2024-09-30' }, secret_names: ['webhook_secret'], credentials: null });
  });
});

describe('integration settings (GET and PATCH /integration/{key})', () => {
  it('shows the settings the Nango GET shows, never a secret', async () => {
    await t.call({
      method: 'POST',
      url: '/integration',
      payload: {
        ...github,
        provider_config_key: 'gh-show',
        display_name: 'GitHub',
        params: { region: 'eu' },
        secrets: { WEBHOOK_KEY: 'whk-secret-value' },
      },
    });
    const got = await t.call({ method: 'GET', url: '/integration/gh-show' });
    expect(got.statusCode).toBe(200);
    expect(got.json()).toMatchObject({
      unique_key: 'gh-show',
      provider: 'github',
      display_name: 'GitHub',
      oauth_client_id: 'Iv1.client',
      has_oauth_client_secret: true,
      oauth_scopes: 'repo,read:user',
      params: { region: 'eu' },
      secret_names: ['WEBHOOK_KEY'],
      url_overrides: {},
    });
    const nango = (await t.call({ method: 'GET', url: '/integrations/gh-show' })).json().data;
    expect(got.json()).toMatchObject({
      display_name: nango.display_name,
      oauth_client_id: nango.credentials.client_id,
      oauth_scopes: nango.credentials.scopes,
      params: nango.params,
      secret_names: nango.secret_names,
    });
    expect(got.body).not.toContain('gh-client-secret-value');
    expect(got.body).not.toContain('whk-secret-value');
  });

  it('updates only the given settings, secrets write-only, on both paths', async () => {
    await t.call({
      method: 'POST',
      url: '/integration',
      payload: { ...github, provider_config_key: 'gh-patch', params: { region: 'eu', tier: 1 }, secrets: { A: 'secret-a-value' } },
    });
    const patched = await t.call({
      method: 'PATCH',
      url: '/integration/gh-patch',
      payload: {
        display_name: 'GitHub (EU)',
        oauth_client_secret: 'rotated-client-secret',
        oauth_scopes: 'repo',
        secrets: { B: 'secret-b-value' },
      },
    });
    expect(patched.statusCode, patched.body).toBe(200);
    expect(patched.json()).toMatchObject({
      unique_key: 'gh-patch',
      display_name: 'GitHub (EU)',
      oauth_client_id: 'Iv1.client',
      has_oauth_client_secret: true,
      oauth_scopes: 'repo',
      params: { region: 'eu', tier: 1 },
      secret_names: ['B'],
    });
    expect(patched.body).not.toMatch(/rotated-client-secret|secret-b-value/);
    const [row] = await queryRows<{ client: string; secrets: string }>(
      t.db.database.db,
      sql`SELECT oauth_client_secret_enc AS client, secrets_enc AS secrets FROM integrations WHERE unique_key = 'gh-patch'`,
    );
    expect((await t.call({ method: 'GET', url: '/integration/gh-patch' })).json()).toEqual(patched.json());
    expect(t.vault.decrypt(row!.client, `integration.client_secret:${t.env.id}`)).toBe('rotated-client-secret');
    expect(t.vault.decryptJson(row!.secrets, `integration.secrets:${t.env.id}`)).toEqual({ B: 'secret-b-value' });

    const v1 = await t.call({
      method: 'PATCH',
      url: '/v1/integrations/gh-patch',
      payload: { provider_config_key: 'gh-patched', oauth_client_id: 'Iv1.other', params: { region: 'us' } },
    });
    expect(v1.statusCode, v1.body).toBe(200);
    expect(v1.json()).toMatchObject({
      unique_key: 'gh-patched',
      oauth_client_id: 'Iv1.other',
      display_name: 'GitHub (EU)',
      params: { region: 'us' },
      secret_names: ['B'],
    });
    expect((await t.call({ method: 'GET', url: '/integration/gh-patch' })).statusCode).toBe(404);
  });

  it('refuses unknown fields, a taken key and an unknown integration', async () => {
    await t.call({ method: 'POST', url: '/integration', payload: { ...github, provider_config_key: 'gh-taken' } });
    await t.call({ method: 'POST', url: '/integration', payload: { ...github, provider_config_key: 'gh-other' } });
    const unknown = await t.call({ method: 'PATCH', url: '/integration/gh-other', payload: { provider: 'slack' } });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.body).toContain('provider');
    const badScopes = await t.call({ method: 'PATCH', url: '/integration/gh-other', payload: { oauth_scopes: 'has space,ok' } });
    expect(badScopes.statusCode).toBe(400);
    expect(badScopes.body).toContain('oauth_scopes');
    expect((await t.call({ method: 'PATCH', url: '/integration/gh-other', payload: { provider_config_key: 'gh-taken' } })).statusCode).toBe(
      409,
    );
    expect((await t.call({ method: 'PATCH', url: '/integration/nope', payload: { display_name: 'x' } })).statusCode).toBe(404);
  });
});

describe('integration bad input', () => {
  it('rejects an unknown provider naming it', async () => {
    const r = await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'x', provider: 'nope-provider' } });
    expect(r.statusCode).toBe(400);
    expect(r.json()).toMatchObject({ error: 'invalid_request' });
    expect(r.json().message).toContain('provider');
    expect(r.json().message).toContain('nope-provider');
  });

  it('rejects a duplicate key with 409', async () => {
    const payload = { provider_config_key: 'dup', provider: 'slack' };
    expect((await t.call({ method: 'POST', url: '/integration', payload })).statusCode).toBe(200);
    const again = await t.call({ method: 'POST', url: '/integration', payload });
    expect(again.statusCode).toBe(409);
    expect(again.json().error).toBe('duplicate_integration');
  });

  it.each([
    ['spaces', 'has spaces'],
    ['slash', 'a/b'],
    ['10,000 characters', 'k'.repeat(10_000)],
    ['empty', ''],
  ])('rejects a key with %s', async (_label, key) => {
    const r = await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: key, provider: 'slack' } });
    expect(r.statusCode).toBe(400);
    expect(r.json().details[0].field).toBe('provider_config_key');
  });

  it('rejects malformed JSON and wrong types', async () => {
    const bad = await t.call({
      method: 'POST',
      url: '/integration',
      payload: '{"provider_config_key": ',
      headers: { 'content-type': 'application/json' },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toBe('invalid_json');
    const wrong = await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 42, provider: ['github'] } });
    expect(wrong.statusCode).toBe(400);
    expect(
      wrong
        .json()
        .details.map((d: { field: string }) => d.field)
        .sort(),
    ).toEqual(['provider', 'provider_config_key']);
  });

  it('requires URLs for the generic oauth2 provider', async () => {
    const r = await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'gen', provider: 'oauth2' } });
    expect(r.statusCode).toBe(400);
    expect(r.json().message).toContain('authorization_url');
    const ok = await t.call({
      method: 'POST',
      url: '/integration',
      payload: {
        provider_config_key: 'gen',
        provider: 'oauth2',
        authorization_url: 'https://auth.example.com/authorize',
        token_url: 'https://auth.example.com/token',
        api_base_url: 'https://api.example.com',
      },
    });
    expect(ok.statusCode).toBe(200);
  });

  it('allows URL overrides only where the provider is self-hostable', async () => {
    const fixed = await t.call({
      method: 'POST',
      url: '/integration',
      payload: { provider_config_key: 'sl', provider: 'slack', api_base_url: 'https://evil.example.com' },
    });
    expect(fixed.statusCode).toBe(400);
    expect(fixed.json().details[0].field).toBe('api_base_url');
    const ghe = await t.call({
      method: 'POST',
      url: '/integration',
      payload: { provider_config_key: 'ghe', provider: 'github-enterprise', api_base_url: 'https://github.acme.corp/api/v3' },
    });
    expect(ghe.statusCode).toBe(200);
  });

  it('rejects OAuth fields on an API-key provider', async () => {
    const r = await t.call({
      method: 'POST',
      url: '/integration',
      payload: { provider_config_key: 'sg', provider: 'sendgrid', oauth_client_id: 'x', oauth_client_secret: 'y' },
    });
    expect(r.statusCode).toBe(400);
    expect(r.json().details[0].field).toBe('oauth_client_id');
  });

  it('answers 503 and writes nothing when secrets cannot be encrypted', async () => {
    const noKeys = await createTestApp({ vault: createVault([]), db: t.db });
    try {
      const r = await noKeys.call({
        method: 'POST',
        url: '/integration',
        payload: { provider_config_key: 'needs-vault', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's3cret' },
      });
      expect(r.statusCode).toBe(503);
      expect(r.json().error).toBe('encryption_unavailable');
      expect((await noKeys.call({ method: 'GET', url: '/integration/needs-vault' })).statusCode).toBe(404);
      // Without secrets, an integration can still be created.
      const plain = await noKeys.call({
        method: 'POST',
        url: '/integration',
        payload: { provider_config_key: 'no-secret', provider: 'github' },
      });
      expect(plain.statusCode).toBe(200);
    } finally {
      await noKeys.app.close();
    }
  });
});

describe('Nango-compatible /integrations', () => {
  it('creates with a credentials object, patches and deletes', async () => {
    const created = await t.call({
      method: 'POST',
      url: '/integrations',
      payload: {
        unique_key: 'hubspot',
        provider: 'hubspot',
        display_name: 'HubSpot CRM',
        credentials: { type: 'OAUTH2', client_id: 'hs-id', client_secret: 'hs-secret', scopes: 'crm.objects.contacts.read,oauth' },
      },
    });
    expect(created.statusCode).toBe(200);
    expect(created.json().data).toMatchObject({
      unique_key: 'hubspot',
      display_name: 'HubSpot CRM',
      credentials: { type: 'OAUTH2', client_id: 'hs-id', has_client_secret: true, scopes: 'crm.objects.contacts.read,oauth' },
    });
    expect(created.body).not.toContain('hs-secret');

    const renamed = await t.call({
      method: 'PATCH',
      url: '/integrations/hubspot',
      payload: { unique_key: 'hubspot-eu', display_name: 'HubSpot EU' },
    });
    expect(renamed.statusCode).toBe(200);
    expect(renamed.json().data).toMatchObject({
      unique_key: 'hubspot-eu',
      display_name: 'HubSpot EU',
      credentials: { client_id: 'hs-id' },
    });
    expect((await t.call({ method: 'GET', url: '/integrations/hubspot' })).statusCode).toBe(404);

    await t.call({ method: 'POST', url: '/integrations', payload: { unique_key: 'taken', provider: 'slack' } });
    const clash = await t.call({ method: 'PATCH', url: '/integrations/hubspot-eu', payload: { unique_key: 'taken' } });
    expect(clash.statusCode).toBe(409);

    const del = await t.call({ method: 'DELETE', url: '/integrations/hubspot-eu' });
    expect(del.json()).toEqual({ success: true });
  });
});
