import { randomBytes } from 'node:crypto';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openDatabase } from '../../src/db/client.js';
import { createTestApp, createTestDatabase, defaultTestConfig, type TestApp, type TestDatabase, usingPostgres } from '../helpers/app.js';

const list = (t: TestApp, key?: string) => t.call({ method: 'GET', url: '/integration', key });

describe('rate limits', () => {
  let a: TestApp;
  let b: TestApp;
  // Both apps count in the same Redis namespace, as two API processes of one deployment do.
  const queues = { ...defaultTestConfig.queues, prefix: `terapi-test-rl-${randomBytes(4).toString('hex')}` };
  const rateLimit = { perEnvironment: 5, perIp: 3, windowMs: 60_000 };
  beforeAll(async () => {
    a = await createTestApp({ config: { queues, rateLimit } });
    b = await createTestApp({ db: a.db, vault: a.vault, config: { queues, rateLimit } });
  });
  afterAll(async () => {
    await b?.app.close();
    await a?.close();
  });

  it('answers 429 with Retry-After past the limit, per environment, counted across processes', async () => {
    for (let i = 0; i < 3; i++) expect((await list(a)).statusCode).toBe(200);
    // The other process sees the first one's requests: two more are allowed, then 429.
    for (let i = 0; i < 2; i++) expect((await list(b, a.env.key)).statusCode).toBe(200);
    const limited = await list(b, a.env.key);
    expect(limited.statusCode).toBe(429);
    expect(limited.json()).toMatchObject({ error: 'rate_limited', message: expect.stringContaining('environment') });
    const retryAfter = Number(limited.headers['retry-after']);
    expect(retryAfter).toBeGreaterThan(0);
    expect(retryAfter).toBeLessThanOrEqual(60);
    expect((await list(a)).statusCode).toBe(429);

    // Another environment has its own counter.
    const other = await a.newEnvironment('other');
    for (let i = 0; i < 5; i++) expect((await list(a, other.key)).statusCode).toBe(200);
    expect((await list(a, other.key)).statusCode).toBe(429);
  });

  it('limits requests without a secret key by address, and never the probes', async () => {
    const page = () => a.app.inject({ method: 'GET', url: '/openapi.json' });
    for (let i = 0; i < 3; i++) expect((await page()).statusCode).toBe(200);
    const limited = await page();
    expect(limited.statusCode).toBe(429);
    expect(limited.json().error).toBe('rate_limited');
    expect(limited.headers['retry-after']).toBeDefined();
    for (let i = 0; i < 5; i++) expect((await a.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
  });
});

describe.skipIf(!usingPostgres)('load shedding: database pool saturated', () => {
  let t: TestApp;
  let small: TestDatabase;
  let base: TestDatabase;
  beforeAll(async () => {
    base = await createTestDatabase();
    // A pool of two connections on the same database, so two slow queries hold all of it.
    const database = await openDatabase({ databaseUrl: base.url!, poolSize: 2 });
    small = { database, url: base.url, drop: () => database.close() };
    t = await createTestApp({ db: small, vault: undefined, config: { shedding: { maxEventLoopDelayMs: 0, maxDatabaseWaiting: 1 } } });
  });
  afterAll(async () => {
    await t?.close();
    await small?.drop();
    await base?.drop();
  });

  it('answers 503 with Retry-After while queries queue for a connection, then recovers; probes keep answering', async () => {
    expect((await list(t)).statusCode).toBe(200);
    const db = small.database.db;
    const held = Promise.all([1, 2, 3].map(() => db.execute(sql`SELECT pg_sleep(2)`)));
    let shed;
    for (let i = 0; i < 100 && !shed; i++) {
      await new Promise((r) => setTimeout(r, 50));
      const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
      if (res.statusCode === 503) shed = res;
    }
    expect(shed?.json()).toMatchObject({ error: 'overloaded', message: expect.stringContaining('database') });
    expect(Number(shed?.headers['retry-after'])).toBeGreaterThan(0);
    expect((await t.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    await held;
    let recovered = false;
    for (let i = 0; i < 100 && !recovered; i++) {
      await new Promise((r) => setTimeout(r, 50));
      recovered = (await list(t)).statusCode === 200;
    }
    expect(recovered).toBe(true);
  });
});

describe('load shedding: event loop lagging', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp({ config: { shedding: { maxEventLoopDelayMs: 50, maxDatabaseWaiting: 0 } } });
  });
  afterAll(async () => t?.close());

  /** Requests until one is served: the plugin's next sample no longer sees the loop lagging. */
  async function recovered() {
    for (let i = 0; i < 200; i++) {
      if ((await list(t)).statusCode === 200) return true;
      await new Promise((r) => setTimeout(r, 50));
    }
    return false;
  }

  it('answers 503 with Retry-After after the loop was blocked, then recovers', async () => {
    // Starting the app on a busy machine may itself have lagged the loop.
    expect(await recovered()).toBe(true);
    let shed;
    for (let i = 0; i < 3 && !shed; i++) {
      // Block the loop, as a CPU-bound request would; the plugin's next sample (within a second) sees it.
      const until = Date.now() + 1500;
      while (Date.now() < until);
      for (let j = 0; j < 60 && !shed; j++) {
        const res = await t.app.inject({ method: 'GET', url: '/openapi.json' });
        if (res.statusCode === 503) shed = res;
        else await new Promise((r) => setTimeout(r, 25));
      }
    }
    expect(shed?.json()).toMatchObject({ error: 'overloaded', message: expect.stringContaining('event loop') });
    expect(shed?.headers['retry-after']).toBe('5');
    expect((await t.app.inject({ method: 'GET', url: '/health' })).statusCode).toBe(200);
    expect(await recovered()).toBe(true);
  });
});
