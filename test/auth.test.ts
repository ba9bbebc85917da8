import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createTestApp, type TestApp } from './helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

const admin = (opts: Parameters<TestApp['call']>[0]) => t.call({ ...opts, key: ADMIN_KEY });

describe('environment authentication', () => {
  it('answers 401 JSON without a key, with a wrong key or a malformed header', async () => {
    for (const headers of [{}, { authorization: 'Bearer terapi_sk_wrong' }, { authorization: 'Basic abc' }, { authorization: 'Bearer' }]) {
      const r = await t.app.inject({ method: 'GET', url: '/integration', headers });
      expect(r.statusCode).toBe(401);
      expect(r.headers['content-type']).toContain('application/json');
      expect(r.json()).toMatchObject({ error: 'unauthorized', message: expect.any(String) });
    }
  });

  it('does not accept the admin key on environment routes', async () => {
    expect((await t.call({ method: 'GET', url: '/integration', key: ADMIN_KEY })).statusCode).toBe(401);
  });

  it('leaves health and docs public', async () => {
    expect((await t.call({ method: 'GET', url: '/health', key: null })).json()).toEqual({ status: 'ok' });
    const ready = await t.call({ method: 'GET', url: '/ready', key: null });
    expect(ready.statusCode).toBe(200);
    expect(ready.json().status).toBe('ready');
    expect((await t.call({ method: 'GET', url: '/openapi.json', key: null })).json().info.title).toBe('Terapi API');
    const docs = await t.call({ method: 'GET', url: '/docs/', key: null });
    expect(docs.statusCode).toBe(200);
    expect(docs.body).toContain('swagger');
  });

  it('echoes a request id', async () => {
    const r = await t.call({ method: 'GET', url: '/health', key: null, headers: { 'x-request-id': 'req-abc' } });
    expect(r.headers['x-request-id']).toBe('req-abc');
    const generated = await t.call({ method: 'GET', url: '/health', key: null });
    expect(generated.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
  });
});

describe('admin API', () => {
  it('creates accounts and environments, showing a new key once', async () => {
    const acct = await admin({ method: 'POST', url: '/admin/accounts', payload: { name: 'Acme Inc' } });
    expect(acct.statusCode).toBe(201);
    const accountId = acct.json().data.id;
    const env = await admin({ method: 'POST', url: `/admin/accounts/${accountId}/environments`, payload: { name: 'prod' } });
    expect(env.statusCode).toBe(201);
    const { id, secret_key: key, secret_key_hint: hint } = env.json().data;
    expect(key).toMatch(/^terapi_sk_[A-Za-z0-9_-]{43}$/);
    expect(key.startsWith(hint.replace('…', ''))).toBe(true);

    // The key works at once, and is never shown again.
    expect((await t.call({ method: 'GET', url: '/integration', key })).statusCode).toBe(200);
    const got = await admin({ method: 'GET', url: `/admin/environments/${id}` });
    expect(got.json().data).not.toHaveProperty('secret_key');
    const list = await admin({ method: 'GET', url: `/admin/accounts/${accountId}/environments` });
    expect(list.json().data.map((e: { name: string }) => e.name)).toEqual(['prod']);
    expect(list.body).not.toContain(key);

    const dup = await admin({ method: 'POST', url: `/admin/accounts/${accountId}/environments`, payload: { name: 'prod' } });
    expect(dup.statusCode).toBe(409);
  });

  it('rotates a key: the old one stops working at once, the new one works', async () => {
    const env = await t.newEnvironment('rotating');
    expect((await t.call({ method: 'GET', url: '/integration', key: env.key })).statusCode).toBe(200);
    const rotated = await admin({ method: 'POST', url: `/admin/environments/${env.id}/rotate-secret-key` });
    expect(rotated.statusCode).toBe(200);
    const newKey = rotated.json().data.secret_key;
    expect(newKey).not.toBe(env.key);
    expect((await t.call({ method: 'GET', url: '/integration', key: env.key })).statusCode).toBe(401);
    expect((await t.call({ method: 'GET', url: '/integration', key: newKey })).statusCode).toBe(200);
  });

  it('rejects environment keys with 403 and wrong keys with 401', async () => {
    const envKey = await t.call({ method: 'GET', url: '/admin/accounts' });
    expect(envKey.statusCode).toBe(403);
    expect(envKey.json().error).toBe('forbidden');
    expect((await t.call({ method: 'GET', url: '/admin/accounts', key: 'not-the-admin-key-at-all-0123456789' })).statusCode).toBe(401);
    expect((await t.call({ method: 'GET', url: '/admin/accounts', key: null })).statusCode).toBe(401);
  });

  it('is disabled (403) when no admin key is configured', async () => {
    const noAdmin = await createTestApp({ db: t.db, config: { adminKey: undefined } });
    try {
      const r = await noAdmin.call({ method: 'GET', url: '/admin/accounts', key: 'x'.repeat(40) });
      expect(r.statusCode).toBe(403);
      expect(r.json().error).toBe('admin_disabled');
    } finally {
      await noAdmin.app.close();
    }
  });

  it('validates ids and names', async () => {
    const badId = await admin({ method: 'GET', url: '/admin/environments/not-a-uuid' });
    expect(badId.statusCode).toBe(400);
    expect(badId.json().details[0].field).toBe('environment_id');
    const missing = await admin({ method: 'GET', url: '/admin/environments/00000000-0000-4000-8000-000000000000' });
    expect(missing.statusCode).toBe(404);
    const acct = (await admin({ method: 'POST', url: '/admin/accounts', payload: { name: 'Names' } })).json().data.id;
    const badName = await admin({ method: 'POST', url: `/admin/accounts/${acct}/environments`, payload: { name: 'Prod Env' } });
    expect(badName.statusCode).toBe(400);
    expect(badName.json().details[0].field).toBe('name');
  });

  it('deleting an environment removes its data and its key', async () => {
    const env = await t.newEnvironment('doomed');
    await t.call({ method: 'POST', url: '/integration', key: env.key, payload: { provider_config_key: 'gh', provider: 'github' } });
    expect((await admin({ method: 'DELETE', url: `/admin/environments/${env.id}` })).statusCode).toBe(204);
    expect((await t.call({ method: 'GET', url: '/integration', key: env.key })).statusCode).toBe(401);
    expect((await admin({ method: 'DELETE', url: `/admin/accounts/${env.accountId}` })).statusCode).toBe(204);
    expect((await admin({ method: 'GET', url: `/admin/accounts/${env.accountId}` })).statusCode).toBe(404);
  });
});

describe('key cache across processes', () => {
  it('a rotation in one app instance invalidates the cached key in another sharing the database', async () => {
    // Two app instances on one database stand for two API processes: each has its own key cache.
    const other = await createTestApp({ db: t.db });
    try {
      const env = await t.newEnvironment('shared');
      // Warm both caches (a TTL of 60 s would keep the old key alive without invalidation).
      expect((await t.call({ method: 'GET', url: '/integration', key: env.key })).statusCode).toBe(200);
      expect((await other.call({ method: 'GET', url: '/integration', key: env.key })).statusCode).toBe(200);
      const rotated = await other.call({ method: 'POST', url: `/admin/environments/${env.id}/rotate-secret-key`, key: ADMIN_KEY });
      const newKey = rotated.json().data.secret_key;
      // NOTIFY is delivered asynchronously after commit; allow it a moment.
      let status = 200;
      for (let i = 0; i < 50 && status === 200; i++) {
        status = (await t.call({ method: 'GET', url: '/integration', key: env.key })).statusCode;
        if (status === 200) await new Promise((r) => setTimeout(r, 20));
      }
      expect(status).toBe(401);
      expect((await t.call({ method: 'GET', url: '/integration', key: newKey })).statusCode).toBe(200);
    } finally {
      await other.app.close();
    }
  });
});
