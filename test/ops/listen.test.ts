import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LISTEN_APPLICATION_NAME } from '../../src/db/client.js';
import { ADMIN_KEY, createTestApp, type TestApp, usingPostgres } from '../helpers/app.js';
import { until } from '../helpers/syncs.js';

/**
 * Cross-process cache invalidation: two apps on one database stand for two Terapi processes.
 * Each caches secret keys for 60 s; only notifications (or a flush) make a rotation visible sooner.
 */
let a: TestApp;
let b: TestApp;

beforeAll(async () => {
  a = await createTestApp();
  b = await createTestApp({ db: a.db });
});
afterAll(async () => {
  await b?.app.close();
  await b?.services.close();
  await a?.close();
});

const lines = (t: TestApp, msg: string) => t.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === msg);
const status = async (t: TestApp, key: string) => (await t.call({ method: 'GET', url: '/integration', key })).statusCode;
const rotate = async (environmentId: string): Promise<string> => {
  const r = await a.call({ method: 'POST', url: `/admin/environments/${environmentId}/rotate-secret-key`, key: ADMIN_KEY });
  expect(r.statusCode, r.body).toBe(200);
  return r.json().data.secret_key;
};

describe('the LISTEN session', () => {
  it('carries a key rotation in one app to the other', async () => {
    const env = await a.newEnvironment('notified');
    expect(await status(b, env.key)).toBe(200);
    const newKey = await rotate(env.id);
    await until('the old key refused by the other app', async () => (await status(b, env.key)) === 401);
    expect(await status(b, newKey)).toBe(200);
  });

  it.runIf(usingPostgres)('comes back after its connection is killed: caches are flushed and notifications flow again', async () => {
    const env = await a.newEnvironment('reconnect');
    expect(await status(b, env.key)).toBe(200);
    // A connection read through the other app's connection cache (in another environment than the
    // rotated key, whose notification would drop that environment's connections too).
    const integration = { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 'secret' };
    expect((await a.call({ method: 'POST', url: '/integration', payload: integration })).statusCode).toBe(200);
    const importConnection = (v: number) =>
      a.call({
        method: 'POST',
        url: '/connection',
        payload: {
          connection_id: 'acme',
          provider_config_key: 'gh',
          credentials: { type: 'OAUTH2', access_token: 'tok' },
          metadata: { v },
        },
      });
    expect((await importConnection(1)).statusCode).toBe(200);
    const metadataIn = async (t: TestApp) => {
      const r = await t.call({ method: 'GET', url: '/connection/acme?provider_config_key=gh', key: a.env.key });
      expect(r.statusCode, r.body).toBe(200);
      return r.json().metadata;
    };
    expect(await metadataIn(b)).toEqual({ v: 1 });
    const database = new URL(a.db.url!).pathname.slice(1);
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    try {
      const killed = await admin.query(
        'SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND application_name = $2',
        [database, LISTEN_APPLICATION_NAME],
      );
      expect(killed.rowCount).toBe(2);
    } finally {
      await admin.end();
    }
    // Changed while the other app is not listening (it listens again 250 ms after the loss): the
    // flush on reconnect must drop what it cached.
    const lost = await until(
      'the loss logged by the other app',
      async () => {
        const found = lines(b, 'the LISTEN session for cache invalidation was lost; listening again');
        return found.length ? found : undefined;
      },
      10_000,
      5,
    );
    expect((await importConnection(2)).statusCode).toBe(200);
    const newKey = await rotate(env.id);
    await until('the LISTEN session back in the other app', async () => lines(b, 'the LISTEN session is back; caches flushed').length > 0);
    expect(await status(b, env.key)).toBe(401);
    expect(await status(b, newKey)).toBe(200);
    expect(await metadataIn(b)).toEqual({ v: 2 });
    expect(lost).toHaveLength(1);
    expect(lost[0]).toMatchObject({ level: 50, err: { message: expect.stringMatching(/terminat/) } });

    // And it listens again: a later rotation arrives as a notification.
    expect(await status(b, newKey)).toBe(200);
    const newerKey = await rotate(env.id);
    await until('the next rotation seen by the other app', async () => (await status(b, newKey)) === 401);
    expect(await status(b, newerKey)).toBe(200);
  });
});
