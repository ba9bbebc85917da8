import { describe, expect, it } from 'vitest';
import { createReadThroughCache } from '../../src/lib/cache.js';

interface Row {
  id: number;
  integrationId: number;
  version: number;
}

const tags = (row: Row) => [`conn:${row.id}`, `integration:${row.integrationId}`];

/** A loader whose answer the test releases, so an invalidation can land while it is in flight. */
function pending<T>() {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => (resolve = r));
  return { promise, resolve };
}

/** Rows by key, as a database would answer; `loads` counts the reads. */
function table() {
  const rows = new Map<string, Row>();
  let loads = 0;
  return {
    rows,
    get loads() {
      return loads;
    },
    loader: (key: string) => async () => {
      loads++;
      const row = rows.get(key);
      return row && { ...row };
    },
  };
}

describe('read-through cache', () => {
  it('loads once per key, then serves from memory', async () => {
    const db = table();
    db.rows.set('a', { id: 1, integrationId: 1, version: 1 });
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 10, tags });
    const [x, y] = await Promise.all([cache.get('a', db.loader('a')), cache.get('a', db.loader('a'))]);
    expect(x).toEqual(y);
    expect(await cache.get('a', db.loader('a'))).toMatchObject({ version: 1 });
    expect(db.loads).toBe(1);
  });

  it('drops only the entries an invalidation names', async () => {
    const db = table();
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 100, tags });
    for (let i = 0; i < 10; i++) {
      db.rows.set(`k${i}`, { id: i, integrationId: i % 2, version: 1 });
      await cache.get(`k${i}`, db.loader(`k${i}`));
    }
    expect(db.loads).toBe(10);

    db.rows.get('k3')!.version = 2;
    cache.invalidate('conn:3');
    expect(cache.size).toBe(9);
    expect(await cache.get('k3', db.loader('k3'))).toMatchObject({ version: 2 });
    for (let i = 0; i < 10; i++) await cache.get(`k${i}`, db.loader(`k${i}`));
    expect(db.loads).toBe(11);

    cache.invalidate('integration:1');
    expect(cache.size).toBe(5);
    cache.invalidate('conn:999');
    expect(cache.size).toBe(5);
  });

  it('evicts the least recently used entry, not the oldest', async () => {
    const db = table();
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 3, tags });
    for (const k of ['a', 'b', 'c', 'd']) db.rows.set(k, { id: k.charCodeAt(0), integrationId: 1, version: 1 });
    for (const k of ['a', 'b', 'c']) await cache.get(k, db.loader(k));
    await cache.get('a', db.loader('a')); // a is now the most recently used
    await cache.get('d', db.loader('d')); // pushes out b
    const before = db.loads;
    await cache.get('a', db.loader('a'));
    expect(db.loads).toBe(before);
    await cache.get('b', db.loader('b'));
    expect(db.loads).toBe(before + 1);
  });

  it('does not store what a load read before an invalidation of its row', async () => {
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 10, tags });
    const first = pending<Row>();
    let version = 1;
    let loads = 0;
    // The first read is slow and sees the row as it was; later reads see the database as it is.
    const loader = () => (++loads === 1 ? first.promise : Promise.resolve({ id: 1, integrationId: 1, version }));
    const reading = cache.get('a', loader);
    // The row changes and its notification arrives while the first read is still in flight.
    version = 2;
    cache.invalidate('conn:1');
    first.resolve({ id: 1, integrationId: 1, version: 1 });
    // The overtaken read is neither stored nor handed out: its caller reads again.
    expect(await reading).toMatchObject({ version: 2 });
    expect(loads).toBe(2);
    expect(await cache.get('a', loader)).toMatchObject({ version: 2 });
    expect(loads).toBe(2);
  });

  it('an overtaken load is loaded again for its callers', async () => {
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 10, tags });
    const loads = [pending<Row>(), pending<Row>()];
    let n = 0;
    const loader = () => loads[n++]!.promise;
    const reading = cache.get('a', loader);
    await Promise.resolve();
    cache.invalidate('integration:7');
    loads[0]!.resolve({ id: 1, integrationId: 7, version: 1 });
    await new Promise((r) => setTimeout(r, 0));
    expect(n).toBe(2);
    loads[1]!.resolve({ id: 1, integrationId: 7, version: 2 });
    expect(await reading).toMatchObject({ version: 2 });
    expect(await cache.get('a', loader)).toMatchObject({ version: 2 });
  });

  it('an invalidation of another row leaves a load in flight alone', async () => {
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 10, tags });
    const load = pending<Row>();
    let calls = 0;
    const reading = cache.get('a', () => (calls++, load.promise));
    await Promise.resolve();
    cache.invalidate('conn:2');
    cache.invalidate('integration:2');
    load.resolve({ id: 1, integrationId: 1, version: 1 });
    expect(await reading).toMatchObject({ version: 1 });
    expect(await cache.get('a', () => (calls++, load.promise))).toMatchObject({ version: 1 });
    expect(calls).toBe(1);
  });

  it('clear drops everything, loads in flight included', async () => {
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 10, tags });
    await cache.get('a', async () => ({ id: 1, integrationId: 1, version: 1 }));
    const load = pending<Row>();
    const reading = cache.get('b', () => load.promise);
    await Promise.resolve();
    cache.clear();
    expect(cache.size).toBe(0);
    load.resolve({ id: 2, integrationId: 1, version: 1 });
    await reading;
    let loaded = false;
    await cache.get('a', async () => ((loaded = true), { id: 1, integrationId: 1, version: 2 }));
    expect(loaded).toBe(true);
  });

  it('passes a loader error to every caller and caches nothing', async () => {
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 10, tags });
    const boom = new Error('database down');
    await expect(cache.get('a', () => Promise.reject(boom))).rejects.toBe(boom);
    expect(await cache.get('a', async () => ({ id: 1, integrationId: 1, version: 1 }))).toMatchObject({ version: 1 });
  });

  it('does not cache a missing row, and ttl 0 caches nothing', async () => {
    const db = table();
    const cache = createReadThroughCache<Row>({ ttlMs: 60_000, maxEntries: 10, tags });
    expect(await cache.get('x', db.loader('x'))).toBeUndefined();
    db.rows.set('x', { id: 1, integrationId: 1, version: 1 });
    expect(await cache.get('x', db.loader('x'))).toBeDefined();

    const off = createReadThroughCache<Row>({ ttlMs: 0, maxEntries: 10, tags });
    await off.get('x', db.loader('x'));
    await off.get('x', db.loader('x'));
    expect(db.loads).toBe(4);
    expect(off.size).toBe(0);
  });
});
