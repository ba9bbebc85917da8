/**
 * Cost of one cache invalidation (a `conn:<id>` notification) in the connection reader's cache,
 * filled with N entries (default 50,000: the reader's capacity) spread over 100 integrations.
 *
 *   npx tsx bench/cache-invalidation.ts                  # src/lib/cache.ts
 *   npx tsx bench/cache-invalidation.ts --entries=50000 --invalidations=2000 --cache=/path/to/cache.ts
 *
 * `--cache` loads another implementation of `createReadThroughCache` (e.g. an older cache.ts taken
 * with `git show <commit>:src/lib/cache.ts > /tmp/old-cache.ts`); one without `invalidate(tag)` is
 * driven through `invalidateWhere(predicate)`, as the reader used to. Each invalidation names a
 * connection that is cached, and the entry is loaded again before the next one, so every
 * measurement runs against a full cache.
 */
import path from 'node:path';
import { pathToFileURL } from 'node:url';

interface Row {
  id: number;
  integrationId: number;
  environmentId: string;
}
interface AnyCache {
  get(key: string, load: () => Promise<Row | undefined>): Promise<Row | undefined>;
  invalidate?(tag: string): void;
  invalidateWhere?(matches: (row: Row) => boolean): void;
}

const argv = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'] as const;
  }),
);
const entries = Number(argv.get('entries') ?? 50_000);
const invalidations = Number(argv.get('invalidations') ?? 2000);
const modulePath = argv.get('cache') ?? path.resolve(import.meta.dirname, '../src/lib/cache.ts');

const { createReadThroughCache } = (await import(pathToFileURL(path.resolve(modulePath)).href)) as {
  createReadThroughCache: (opts: { ttlMs: number; maxEntries: number; tags: (row: Row) => string[] }) => AnyCache;
};
const cache = createReadThroughCache({
  ttlMs: 3_600_000,
  maxEntries: entries,
  tags: (row) => [`conn:${row.id}`, `integration:${row.integrationId}`, `env:${row.environmentId}`],
});
const rows = Array.from({ length: entries }, (_, i) => ({ id: i + 1, integrationId: (i % 100) + 1, environmentId: 'env-1' }));
const keyOf = (row: Row) => `env-1\u0000int-${row.integrationId}\u0000conn-${row.id}`;
const load = (row: Row) => () => Promise.resolve({ ...row });
const invalidate = (row: Row) =>
  cache.invalidate ? cache.invalidate(`conn:${row.id}`) : cache.invalidateWhere!((r) => String(r.id) === String(row.id));

for (const row of rows) await cache.get(keyOf(row), load(row));

let total = 0n;
for (let i = 0; i < invalidations; i++) {
  const row = rows[(i * 7919) % entries]!;
  const t0 = process.hrtime.bigint();
  invalidate(row);
  total += process.hrtime.bigint() - t0;
  await cache.get(keyOf(row), load(row));
}
const perInvalidationUs = Number(total) / invalidations / 1000;
console.log(
  JSON.stringify({
    cache: path.relative(process.cwd(), modulePath) || modulePath,
    api: cache.invalidate ? 'invalidate(tag)' : 'invalidateWhere(predicate)',
    entries,
    invalidations,
    perInvalidationUs: Number(perInvalidationUs.toFixed(2)),
  }),
);
