import { createServer } from 'node:net';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp, usingPostgres } from '../helpers/app.js';
import { until } from '../helpers/syncs.js';

/** A local port nothing listens on: connections to it are refused at once. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise((r) => server.close(r));
  return port;
}

const lines = (t: TestApp, msg: string) => t.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === msg);

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
});

describe('GET /ready', () => {
  it('answers 200 when the database and Redis answer', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/ready' });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toEqual({ status: 'ready', database: usingPostgres ? 'postgres' : 'pglite', checks: { database: 'ok', redis: 'ok' } });
  });

  it('answers 503 naming redis when Redis is unreachable, and logs it once, not per probe', async () => {
    const down = await createTestApp({ db: t.db, redis: { url: `redis://127.0.0.1:${await closedPort()}` } });
    try {
      for (let i = 0; i < 3; i++) {
        const r = await down.app.inject({ method: 'GET', url: '/ready' });
        expect(r.statusCode, r.body).toBe(503);
        expect(r.json()).toEqual({
          error: 'not_ready',
          message: 'Not ready: redis is not reachable',
          checks: { database: 'ok', redis: 'down' },
        });
      }
      const readiness = lines(down, 'readiness: redis is not reachable');
      expect(readiness).toHaveLength(1);
      expect(readiness[0]).toMatchObject({ level: 50, dependency: 'redis' });
      // The queue connection's own errors are logged too, rate-limited: one line however many reconnects.
      const redisErrors = await until('the redis error log line', async () => {
        const found = lines(down, 'redis error; reconnecting');
        return found.length ? found : undefined;
      });
      expect(redisErrors).toHaveLength(1);
      expect(JSON.stringify(redisErrors[0])).toMatch(/ECONNREFUSED/);
    } finally {
      await down.close();
    }
  });

  it.runIf(usingPostgres)('answers 503 naming the database when PostgreSQL refuses connections, and 200 once it is back', async () => {
    const name = new URL(t.db.url!).pathname.slice(1);
    const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
    await admin.connect();
    try {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      await admin.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [name]);
      const r = await until('a 503', async () => {
        const res = await t.app.inject({ method: 'GET', url: '/ready' });
        return res.statusCode === 503 ? res : undefined;
      });
      expect(r.json()).toEqual({
        error: 'not_ready',
        message: 'Not ready: database is not reachable',
        checks: { database: 'down', redis: 'ok' },
      });
      expect(lines(t, 'readiness: database is not reachable')).toHaveLength(1);
    } finally {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await admin.end();
    }
    await until('readiness again', async () => (await t.app.inject({ method: 'GET', url: '/ready' })).statusCode === 200);
    expect(lines(t, 'readiness: database is reachable again')).toHaveLength(1);
  });
});
