import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

/** Two app instances on one database stand for two API processes, each with its own token cache. */
let a: TestApp;
let b: TestApp;
beforeAll(async () => {
  a = await createTestApp();
  b = await createTestApp({ db: a.db, vault: a.vault });
  await a.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'gh', provider: 'github' } });
});
afterAll(async () => {
  await b?.app.close();
  await a?.close();
});

const tokenFrom = (t: TestApp, id: string) => t.call({ method: 'GET', url: `/auth/token/gh/${id}`, key: a.env.key });
const importToken = (t: TestApp, id: string, token: string) =>
  t.call({
    method: 'POST',
    url: '/connection',
    key: a.env.key,
    payload: { connection_id: id, provider_config_key: 'gh', credentials: { access_token: token, expires_in: 7200 } },
  });

async function eventually(check: () => Promise<boolean>) {
  for (let i = 0; i < 100; i++) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

describe('cached connection reads', () => {
  it('read their own writes at once', async () => {
    await importToken(a, 'ryw', 'token');
    for (let i = 0; i < 20; i++) {
      const patched = await a.call({ method: 'PATCH', url: '/connection/ryw/metadata?provider_config_key=gh', payload: { n: i } });
      expect(patched.json().metadata.n).toBe(i);
      expect((await a.call({ method: 'GET', url: '/connection/ryw?provider_config_key=gh' })).json().metadata.n).toBe(i);
      await importToken(a, 'ryw', `token-${i}`);
      expect((await tokenFrom(a, 'ryw')).json().access_token).toBe(`token-${i}`);
    }
  });

  it('see metadata written by another process', async () => {
    await importToken(a, 'meta', 'token');
    expect((await a.call({ method: 'GET', url: '/connection/meta?provider_config_key=gh' })).json().metadata).toEqual({});
    await b.call({ method: 'POST', url: '/connection/meta/metadata?provider_config_key=gh', key: a.env.key, payload: { from: 'b' } });
    expect(
      await eventually(
        async () => (await a.call({ method: 'GET', url: '/connection/meta?provider_config_key=gh' })).json().metadata.from === 'b',
      ),
    ).toBe(true);
  });
});

describe('token cache invalidation across processes', () => {
  it('serves new credentials and deletions made by another process', async () => {
    await importToken(a, 'c1', 'first-token');
    expect((await tokenFrom(a, 'c1')).json().access_token).toBe('first-token');
    expect((await tokenFrom(a, 'c1')).json().access_token).toBe('first-token');

    await importToken(b, 'c1', 'second-token');
    expect(await eventually(async () => (await tokenFrom(a, 'c1')).json().access_token === 'second-token')).toBe(true);

    await b.call({ method: 'DELETE', url: '/connection/c1?provider_config_key=gh', key: a.env.key });
    expect(await eventually(async () => (await tokenFrom(a, 'c1')).statusCode === 404)).toBe(true);
  });

  it('drops cached tokens when the integration is deleted elsewhere', async () => {
    await importToken(a, 'c2', 'doomed-token');
    expect((await tokenFrom(a, 'c2')).statusCode).toBe(200);
    await b.call({ method: 'DELETE', url: '/integration/gh', key: a.env.key });
    expect(await eventually(async () => (await tokenFrom(a, 'c2')).statusCode === 404)).toBe(true);
  });
});
