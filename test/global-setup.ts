import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { dumpPgliteTemplate } from '../src/db/client.js';
import { stopLeftoverEmbeddedRedis } from '../src/queue/redis.js';

/**
 * One temporary directory for the whole test run, where each test file's embedded redis-server
 * keeps its data (test/helpers/app.ts), and the migrated PGlite every embedded test database starts from. A test file's process can end without running its exit
 * handlers (vitest stops its workers), which would leave that redis-server running: at the end of
 * the run every one still alive under this directory is stopped, and the directory removed.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(tmpdir(), 'terapi-test-'));
  process.env.TERAPI_TEST_TMP = dir;
  // The embedded pass: one migrated PGlite, dumped once; every test file's database starts from it
  // instead of running initdb and the migrations again (test/helpers/app.ts).
  if (!process.env.DATABASE_URL) {
    const template = path.join(dir, 'pglite-template.tar');
    await writeFile(template, Buffer.from(await (await dumpPgliteTemplate()).arrayBuffer()));
    process.env.TERAPI_TEST_PGLITE_TEMPLATE = template;
  }
  return async () => {
    await Promise.all(readdirSync(dir).map((entry) => stopLeftoverEmbeddedRedis(path.join(dir, entry)).catch(() => undefined)));
    await rm(dir, { recursive: true, force: true });
  };
}
