import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import type { FastifyInstance, InjectOptions, LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { type AppConfig, buildApp } from '../../src/app.js';
import { type Database, type DatabaseOptions, openDatabase } from '../../src/db/client.js';
import { createKeyCache } from '../../src/environments/key-cache.js';
import { findEnvironmentByKeyHash } from '../../src/environments/repository.js';
import { createEnvironmentService, type EnvironmentService } from '../../src/environments/service.js';
import { createLogger } from '../../src/lib/logger.js';
import { createVault, type Vault } from '../../src/lib/vault.js';
import { loadCatalog } from '../../src/providers/catalog.js';
import type { FunctionDefinition } from '../../src/functions/define.js';
import { type EmbeddedRedis, type RedisTarget, startEmbeddedRedis } from '../../src/queue/redis.js';
import { createServices, type Services } from '../../src/services.js';
import { startWorkers, type Workers } from '../../src/workers.js';

/** Set by CI for the Postgres pass; unset means the embedded PGlite database. */
const serverUrl = process.env.DATABASE_URL;

export const usingPostgres = Boolean(serverUrl);

export interface TestDatabase {
  database: Database;
  /** Connection string of this test file's own database (Postgres pass only). */
  url?: string;
  drop(): Promise<void>;
}

/** A fresh, migrated database for one test file: its own Postgres database, or an in-memory PGlite. */
export async function createTestDatabase(opts: Pick<DatabaseOptions, 'onQuery'> = {}): Promise<TestDatabase> {
  if (!serverUrl) {
    // Written by test/global-setup.ts; migrating again is a no-op unless a migration is newer than the run.
    const templateFile = process.env.TERAPI_TEST_PGLITE_TEMPLATE;
    const pgliteTemplate = templateFile ? new Blob([await readFile(templateFile)]) : undefined;
    const database = await openDatabase({ pgliteTemplate, ...opts });
    await database.migrate();
    return { database, drop: () => database.close() };
  }
  const name = `terapi_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: serverUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const database = await openDatabase({ databaseUrl: url.toString(), poolSize: 10, ...opts });
  await database.migrate();
  return {
    database,
    url: url.toString(),
    async drop() {
      await database.close();
      const client = new pg.Client({ connectionString: serverUrl });
      await client.connect();
      await client.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await client.end();
    },
  };
}

export const testVault = (): Vault => createVault([{ id: 'test', key: randomBytes(32) }]);

export const ADMIN_KEY = `admin_${randomBytes(24).toString('hex')}`;

export const defaultTestConfig: AppConfig = {
  bodyLimitBytes: 1024 * 1024,
  importBodyLimitBytes: 64 * 1024 * 1024,
  metadataLimitBytes: 64 * 1024,
  allowProviderUrlOverrides: false,
  adminKey: ADMIN_KEY,
  keyCacheTtlMs: 60_000,
  // Fake providers and the OAuth server fixture listen on loopback.
  egress: { allowPrivateNetworks: true, allowedHosts: [], timeoutMs: 10_000 },
  refreshMarginSeconds: 900,
  proxy: { timeoutMs: 10_000, bodyLimitBytes: 64 * 1024 * 1024 },
  connectSessionTtlSeconds: 1800,
  serverUrl: 'http://127.0.0.1:3003',
  // Each test file has its own queue namespace, so files sharing one Redis (CI) never see each other's jobs.
  queues: { prefix: `terapi-test-${randomBytes(4).toString('hex')}`, syncConcurrency: 4, actionConcurrency: 20, webhookConcurrency: 8 },
  runs: {
    syncTimeoutMs: 30_000,
    actionTimeoutMs: 10_000,
    actionWaitMs: 10_000,
    leaseMs: 3000,
    schedulerIntervalMs: 500,
    providerRetries: 3,
    retentionDays: 30,
  },
  webhooks: { maxAttempts: 5, backoffMs: 200 },
  rateLimit: { perEnvironment: 10_000, perIp: 1000, windowMs: 1000 },
  // No event-loop shedding: a loaded test machine lags for seconds while a file starts (test/http/protection.test.ts sets it).
  shedding: { maxEventLoopDelayMs: 0, maxDatabaseWaiting: 200 },
};

let embeddedRedis: Promise<EmbeddedRedis> | undefined;

/** REDIS_URL when set (CI's Postgres pass), else one embedded redis-server for this test file. */
export async function testRedis(): Promise<RedisTarget> {
  if (process.env.REDIS_URL) return { url: process.env.REDIS_URL };
  embeddedRedis ??= (async () => {
    // Under the run's directory (test/global-setup.ts), which stops it if this process cannot.
    const dir = await mkdtemp(path.join(process.env.TERAPI_TEST_TMP ?? tmpdir(), 'redis-'));
    const redis = await startEmbeddedRedis({ dataDir: dir });
    process.once('beforeExit', () => void redis.stop().then(() => rm(dir, { recursive: true, force: true })));
    return redis;
  })();
  return (await embeddedRedis).target;
}

export interface TestEnvironment {
  id: string;
  accountId: string;
  key: string;
}

export interface TestApp {
  app: FastifyInstance;
  db: TestDatabase;
  vault: Vault;
  environments: EnvironmentService;
  /** The first environment of the first account. */
  env: TestEnvironment;
  /** Every log line the app wrote (JSON strings). */
  logs: string[];
  services: Services;
  /** Present when created with `workers: true`. */
  workers?: Workers;
  /** A second environment in its own account. */
  newEnvironment(name?: string): Promise<TestEnvironment>;
  /** app.inject with the environment's key (the default one unless given). */
  call(opts: InjectOptions & { key?: string | null }): Promise<LightMyRequestResponse>;
  close(): Promise<void>;
}

export interface TestAppOptions {
  config?: Partial<AppConfig>;
  vault?: Vault;
  /** Share another test app's database (for multi-process behaviour on one database). */
  db?: TestDatabase;
  /** Run the queue workers (syncs, actions, webhooks, scheduler) in this app, as `terapi serve` does. */
  workers?: boolean;
  extraFunctions?: Record<string, readonly FunctionDefinition[]>;
  /** Where the queues live instead of the test Redis (e.g. an unreachable one). */
  redis?: RedisTarget;
}

/** The real app on a real database, with a fresh account and environment. */
export async function createTestApp(opts: TestAppOptions = {}): Promise<TestApp> {
  const db = opts.db ?? (await createTestDatabase());
  const vault = opts.vault ?? testVault();
  const logs: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      logs.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = createLogger({ level: 'info', destination });
  const config = { ...defaultTestConfig, ...opts.config };
  const redis = opts.redis ?? (await testRedis());
  const deps = { config, database: db.database, vault, catalog: loadCatalog(), logger, redis, extraFunctions: opts.extraFunctions };
  const services = await createServices(deps);
  const app = await buildApp({ ...deps, services });
  await app.ready();
  const workers = opts.workers ? await startWorkers({ services, config, redis, log: logger }) : undefined;
  const keyCache = createKeyCache({ ttlMs: 0, load: (h) => findEnvironmentByKeyHash(db.database.db, h) });
  const environments = createEnvironmentService({ db: db.database.db, keyCache });

  const newEnvironment = async (name = 'dev'): Promise<TestEnvironment> => {
    const account = await environments.createAccount(`acct ${randomBytes(4).toString('hex')}`);
    const { env, secretKey } = await environments.createEnvironment(account.id, name);
    return { id: env.id, accountId: account.id, key: secretKey };
  };
  const env = await newEnvironment();

  return {
    app,
    db,
    vault,
    environments,
    env,
    logs,
    services,
    workers,
    newEnvironment,
    call({ key, headers, ...rest }) {
      const token = key === undefined ? env.key : key;
      return app.inject({ ...rest, headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...headers } });
    },
    async close() {
      await workers?.stop();
      await app.close();
      await services.close();
      if (!opts.db) await db.drop();
    },
  };
}
