import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

/**
 * Two apps on one database stand for two API processes, each with its own connection cache fed by
 * the other's notifications.
 */
let a: TestApp;
let b: TestApp;
beforeAll(async () => {
  a = await createTestApp();
  b = await createTestApp({ db: a.db, vault: a.vault });
  for (const key of ['gh', 'other']) {
    await a.call({ method: 'POST', url: '/integration', payload: { provider_config_key: key, provider: 'github' } });
  }
});
afterAll(async () => {
  await b?.app.close();
  await a?.close();
});

const importToken = (t: TestApp, key: string, id: string, token: string) =>
  t.call({
    method: 'POST',
    url: '/connection',
    key: a.env.key,
    payload: { connection_id: id, provider_config_key: key, credentials: { access_token: token, expires_in: 7200 } },
  });
const tokenIn = async (t: TestApp, key: string, id: string) => {
  const res = await t.call({ method: 'GET', url: `/auth/token/${key}/${id}`, key: a.env.key });
  return res.statusCode === 200 ? res.json<{ access_token: string }>().access_token : `status ${res.statusCode}`;
};

async function eventually(check: () => Promise<boolean>, ms = 5000) {
  for (const until = Date.now() + ms; Date.now() < until;) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

describe('connection cache across processes', () => {
  it('a write in one process is read in the other, even while that one keeps reading', async () => {
    await importToken(a, 'gh', 'busy', 'token-0');
    expect(await tokenIn(a, 'gh', 'busy')).toBe('token-0');

    // Readers in A keep loads in flight while B's writes and their notifications land.
    let reading = true;
    const seen: string[] = [];
    const readers = Array.from({ length: 4 }, async () => {
      while (reading) {
        seen.push(await tokenIn(a, 'gh', 'busy'));
        // A cache hit completes in microtasks: yield, or the notifications would never be read.
        await new Promise((r) => setImmediate(r));
      }
    });
    try {
      for (let i = 1; i <= 15; i++) {
        await importToken(b, 'gh', 'busy', `token-${i}`);
        // A stale value stored by a load that raced the notification would stay until the TTL (a minute).
        expect(await eventually(async () => (await tokenIn(a, 'gh', 'busy')) === `token-${i}`)).toBe(true);
        for (let j = 0; j < 3; j++) expect(await tokenIn(a, 'gh', 'busy')).toBe(`token-${i}`);
      }
    } finally {
      reading = false;
      await Promise.all(readers);
    }
    expect(seen.every((t) => t.startsWith('token-'))).toBe(true);
  });

  it('an invalidation leaves the other connections cached, and reaches integration and deletion', async () => {
    for (const id of ['x1', 'x2']) await importToken(a, 'gh', id, `${id}-old`);
    await importToken(a, 'other', 'y1', 'y1-old');
    for (const [key, id] of [
      ['gh', 'x1'],
      ['gh', 'x2'],
      ['other', 'y1'],
    ] as const)
      expect(await tokenIn(a, key, id)).toBe(`${id}-old`);

    await importToken(b, 'gh', 'x1', 'x1-new');
    expect(await eventually(async () => (await tokenIn(a, 'gh', 'x1')) === 'x1-new')).toBe(true);
    expect(await tokenIn(a, 'gh', 'x2')).toBe('x2-old');

    // Deleting an integration elsewhere drops the cached connections of that integration only.
    await b.call({ method: 'DELETE', url: '/integration/gh', key: a.env.key });
    expect(await eventually(async () => (await tokenIn(a, 'gh', 'x2')) === 'status 404')).toBe(true);
    expect(await tokenIn(a, 'other', 'y1')).toBe('y1-old');

    await b.call({ method: 'DELETE', url: '/connection/y1?provider_config_key=other', key: a.env.key });
    expect(await eventually(async () => (await tokenIn(a, 'other', 'y1')) === 'status 404')).toBe(true);
  });
});
