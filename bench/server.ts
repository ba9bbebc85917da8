/**
 * Benchmark server child process. Usage:
 *
 *   node --import tsx bench/server.ts <bare | postgres | pglite | pglite-dir>
 *
 * - bare        a bare Fastify 5 server, one route shaped like GET /connection/{id} (no database)
 * - postgres    the real Terapi app (buildApp) on a fresh Postgres database `terapi_bench_<random>`
 *               created on BENCH_PG_URL (default postgres://postgres@127.0.0.1:5432/postgres), dropped on exit
 * - pglite      the real Terapi app on an in-memory PGlite database
 * - pglite-dir  the real Terapi app on PGlite in a temporary data directory (removed on exit), as embedded mode runs
 *
 * With BENCH_VARIANTS=1 the Terapi modes also serve the what-if routes of bench/variants.ts.
 *
 * The Terapi modes seed one account + environment, then through the API (app.inject) one `github`
 * integration and BENCH_CONNECTIONS (default 1000) OAUTH2 connections with encrypted credentials, then listen on 127.0.0.1 on a free
 * port and print ONE JSON line to stdout:
 *   {"port", "key", "connectionId", "providerConfigKey", "idPrefix", "connections", "dbName"?, "pid"}
 * Logs go to stderr (level BENCH_LOG_LEVEL, default "warn"), so stdout carries only that line.
 *
 * Commands on stdin (one per line), answered with one JSON line on stdout:
 *   stats          → {"stats": {"queries", "cpuUser", "cpuSystem"}}  queries sent to the database so far
 *                    (pg.Client#query / PGlite#query calls, counted by a wrapper) and process.cpuUsage() in µs
 *   profile-start  → {"profiling": true}  starts the V8 sampling profiler (in-process, via node:inspector,
 *                    so start-up and seeding stay out of the profile); needs BENCH_CPU_PROFILE=<file>,
 *                    and the profile is written to <file> on SIGTERM, before shutting down
 *
 * SIGTERM/SIGINT: close the server, the database, drop the bench database, exit 0.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { createInterface } from 'node:readline';
import { PGlite } from '@electric-sql/pglite';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import Fastify, { type FastifyInstance } from 'fastify';
import pg from 'pg';
import pino from 'pino';
import { type AppConfig, buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { type Database, openDatabase } from '../src/db/client.js';
import { createKeyCache } from '../src/environments/key-cache.js';
import { generateSecretKey } from '../src/environments/keys.js';
import { findEnvironmentByKeyHash } from '../src/environments/repository.js';
import { createEnvironmentService } from '../src/environments/service.js';
import { createLogger } from '../src/lib/logger.js';
import { createVault, generateKeySpec, parseEncryptionKeys } from '../src/lib/vault.js';
import { loadCatalog } from '../src/providers/catalog.js';
import { registerVariants, variantNames, variantPath } from './variants.js';

export type ServerMode = 'bare' | 'postgres' | 'pglite' | 'pglite-dir';
export const serverModes: readonly ServerMode[] = ['bare', 'postgres', 'pglite', 'pglite-dir'];

/** What the child prints once it listens. */
export interface ReadyLine {
  mode: ServerMode;
  pid: number;
  port: number;
  key: string;
  connectionId: string;
  providerConfigKey: string;
  /** Seeded connection ids are `${idPrefix}${0..connections-1}`. */
  idPrefix: string;
  connections: number;
  /** Postgres mode: the bench database (the runner attributes its backends' CPU). */
  dbName?: string;
  /** With BENCH_VARIANTS=1: what-if routes (bench/variants.ts), name → path prefix. */
  variants?: Record<string, string>;
  logLevel: string;
  poolSize?: number;
}

const PROVIDER_CONFIG_KEY = 'github-bench';
/** Seeded access tokens look like this one: `gho_` + 36 hex characters. */
const bareAccessToken = `gho_${randomBytes(18).toString('hex')}`;
const ID_PREFIX = 'bench-conn-';
const logLevel = process.env.BENCH_LOG_LEVEL ?? 'warn';
const connectionCount = Number(process.env.BENCH_CONNECTIONS ?? 1000);
const poolSize = Number(process.env.BENCH_POOL_SIZE ?? 20); // TERAPI's DATABASE_POOL_SIZE default
const adminUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';

const say = (msg: string) => process.stderr.write(`[bench/server ${process.argv[2]}] ${msg}\n`);

let shuttingDown = false;
let queryCount = 0;

/** Counts every query sent to the database (all connections), to check "one query per request". */
function countQueries() {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- the original method, kept to be re-applied with the client as `this` below
  const pgQuery = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    queryCount++;
    return (pgQuery as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof pgQuery;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- the original method, kept to be re-applied with the instance as `this` below
  const pgliteQuery = PGlite.prototype.query;
  PGlite.prototype.query = function (this: PGlite, ...args: unknown[]) {
    queryCount++;
    return (pgliteQuery as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof pgliteQuery;
}

/** Cleanup steps, run in reverse order on shutdown. */
const cleanups: (() => Promise<void> | void)[] = [];

async function startBare(): Promise<{ app: FastifyInstance; ready: Omit<ReadyLine, 'port' | 'pid'> }> {
  const app = Fastify({ logger: false });
  const createdAt = new Date().toISOString();
  const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
  // Same URL shape and a body of the same fields/size as Terapi's connection response.
  app.get<{ Params: { connection_id: string }; Querystring: { provider_config_key?: string } }>(
    '/connection/:connection_id',
    async (req) => ({
      id: req.params.connection_id,
      provider_config_key: req.query.provider_config_key ?? PROVIDER_CONFIG_KEY,
      provider: 'github',
      created_at: createdAt,
      updated_at: createdAt,
      metadata: { team: 'bench', plan: 'pro' },
      credentials: { type: 'oauth2', expires_at: expiresAt },
    }),
  );
  // GET /auth/token's twin: the same URL, a body of the same shape and size as Terapi's token
  // response (124 B: a 40-character access token, `raw`, `expires_at`) and the same response
  // headers (an `x-request-id` of the same length, fixed: no per-request work).
  const requestId = randomUUID();
  app.get<{ Params: { provider_config_key: string; connection_id: string } }>(
    '/auth/token/:provider_config_key/:connection_id',
    async (_req, reply) => {
      reply.header('x-request-id', requestId);
      return { type: 'Bearer', access_token: bareAccessToken, raw: {}, expires_at: expiresAt };
    },
  );
  return {
    app,
    ready: {
      mode: 'bare',
      // A key of the real length, so the load generator sends the same request bytes (the route ignores it).
      key: generateSecretKey(),
      connectionId: `${ID_PREFIX}0`,
      providerConfigKey: PROVIDER_CONFIG_KEY,
      idPrefix: ID_PREFIX,
      connections: connectionCount,
      logLevel: 'none (logger: false)',
    },
  };
}

async function openBenchDatabase(mode: Exclude<ServerMode, 'bare'>): Promise<{ database: Database; dbName?: string }> {
  // DROP DATABASE … WITH (FORCE) on exit terminates pool clients pg.Pool#end() has not finished closing (57P01): expected then.
  const onError = (err: Error) => {
    if (!shuttingDown) say(`database error: ${err.message}`);
  };
  if (mode === 'postgres') {
    const dbName = `terapi_bench_${randomBytes(6).toString('hex')}`;
    const admin = new pg.Client({ connectionString: adminUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${dbName}`);
    await admin.end();
    cleanups.push(async () => {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      await c.end();
      say(`dropped database ${dbName}`);
    });
    const url = new URL(adminUrl);
    url.pathname = `/${dbName}`;
    const database = await openDatabase({ databaseUrl: url.toString(), poolSize, onError });
    return { database, dbName };
  }
  if (mode === 'pglite-dir') {
    const dir = mkdtempSync(path.join(tmpdir(), 'terapi-bench-'));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    return { database: await openDatabase({ pgliteDir: path.join(dir, 'pgdata'), onError }) };
  }
  return { database: await openDatabase({ onError }) };
}

async function startTerapi(mode: Exclude<ServerMode, 'bare'>): Promise<{ app: FastifyInstance; ready: Omit<ReadyLine, 'port' | 'pid'> }> {
  // The same construction path as src/main.ts: vault from a key spec, migrated database, catalog, pino logger.
  const vault = createVault(parseEncryptionKeys(generateKeySpec()));
  const { database, dbName } = await openBenchDatabase(mode);
  cleanups.push(() => database.close());
  await database.migrate();
  const catalog = loadCatalog();
  // pino to stderr (fd 2) instead of stdout so the ready line stays alone on stdout; same sonic-boom destination type as the default.
  const logger = createLogger({ level: logLevel, destination: pino.destination({ dest: 2, sync: false }) });

  // Account + environment (as the bootstrap does on first start).
  const db = database.db;
  const keyCache = createKeyCache({ ttlMs: 0, load: (h) => findEnvironmentByKeyHash(db, h) });
  const environments = createEnvironmentService({ db, keyCache });
  const account = await environments.createAccount('bench');
  const { secretKey } = await environments.createEnvironment(account.id, 'bench');

  // The real config loader with its defaults (as `terapi serve` with no variables set), so new
  // AppConfig fields need no change here; only the logger level is the benchmark's.
  // Rate limits and load shedding as configured in this process's environment (defaults: on).
  const protection = Object.fromEntries(Object.entries(process.env).filter(([k]) => /^TERAPI_(RATE_LIMIT|SHED)_/.test(k)));
  const config: AppConfig = loadConfig({ ...protection, LOG_LEVEL: logLevel });
  const app = await buildApp({
    config,
    database,
    vault,
    catalog,
    logger,
    redis: { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
  });
  const withVariants = process.env.BENCH_VARIANTS === '1';
  if (withVariants) registerVariants(app, database, config.keyCacheTtlMs);
  await app.ready();

  // Seed through the public API (app.inject): one github integration, N OAUTH2 connections.
  const started = Date.now();
  const call = async (method: 'POST', url: string, payload: object) => {
    const res = await app.inject({ method, url, payload, headers: { authorization: `Bearer ${secretKey}` } });
    if (res.statusCode >= 300) throw new Error(`seeding ${method} ${url} → ${res.statusCode} ${res.body}`);
  };
  await call('POST', '/integration', {
    provider_config_key: PROVIDER_CONFIG_KEY,
    provider: 'github',
    oauth_client_id: 'bench-client',
    oauth_client_secret: 'bench-secret',
  });
  const expiresAt = new Date(Date.now() + 3_600_000).toISOString();
  const batch = mode === 'postgres' ? 10 : 1; // PGlite is single-connection; parallelism would only queue.
  for (let i = 0; i < connectionCount; i += batch) {
    const work: Promise<unknown>[] = [];
    for (let j = i; j < Math.min(i + batch, connectionCount); j++) {
      work.push(
        call('POST', '/connection', {
          provider_config_key: PROVIDER_CONFIG_KEY,
          connection_id: `${ID_PREFIX}${j}`,
          credentials: {
            access_token: `gho_${randomBytes(18).toString('hex')}`,
            refresh_token: `ghr_${randomBytes(18).toString('hex')}`,
            expires_at: expiresAt,
          },
          metadata: { team: 'bench', plan: 'pro' },
          end_user: { id: `user-${j}`, email: `user${j}@example.com` },
        }),
      );
    }
    await Promise.all(work);
  }
  if (mode === 'postgres') await db.execute(sql`ANALYZE`);
  say(`seeded ${connectionCount} connections in ${Date.now() - started} ms`);

  return {
    app,
    ready: {
      mode,
      key: secretKey,
      connectionId: `${ID_PREFIX}0`,
      providerConfigKey: PROVIDER_CONFIG_KEY,
      idPrefix: ID_PREFIX,
      connections: connectionCount,
      dbName,
      logLevel,
      poolSize: mode === 'postgres' ? poolSize : undefined,
      variants: withVariants ? Object.fromEntries(variantNames.map((n) => [n, variantPath(n)])) : undefined,
    },
  };
}

/** In-process V8 CPU profiler: started by the `profile-start` command, written on shutdown. */
function setupProfiler(file: string | undefined): { start(): Promise<void>; stop(): Promise<void> } {
  if (!file) return { start: async () => void say('profile-start ignored: BENCH_CPU_PROFILE is not set'), stop: async () => undefined };
  const session = new Session();
  session.connect();
  const post = <T = unknown>(method: string, params?: object) =>
    new Promise<T>((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
  let running = false;
  return {
    async start() {
      if (running) return;
      running = true;
      await post('Profiler.enable');
      await post('Profiler.setSamplingInterval', { interval: Number(process.env.BENCH_CPU_PROFILE_INTERVAL_US ?? 500) });
      await post('Profiler.start');
      say('profiler started');
    },
    async stop() {
      if (!running) return;
      running = false;
      const { profile } = await post<{ profile: unknown }>('Profiler.stop');
      writeFileSync(file, JSON.stringify(profile));
      say(`wrote CPU profile ${file}`);
      session.disconnect();
    },
  };
}

async function main() {
  const mode = process.argv[2] as ServerMode;
  if (!serverModes.includes(mode)) {
    process.stderr.write(`usage: node --import tsx bench/server.ts <${serverModes.join(' | ')}>\n`);
    process.exit(2);
  }
  let stopping = false;
  let app: FastifyInstance | undefined;
  const profiler = setupProfiler(process.env.BENCH_CPU_PROFILE);
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    shuttingDown = true;
    const hardStop = setTimeout(() => {
      say('shutdown timed out');
      process.exit(1);
    }, 20_000);
    hardStop.unref();
    try {
      await profiler.stop();
      await app?.close();
    } catch (err) {
      say(`close failed: ${String(err)}`);
      code = code || 1;
    }
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (err) {
        say(`cleanup failed: ${String(err)}`);
        code = code || 1;
      }
    }
    process.exit(code);
  };
  process.once('SIGTERM', () => void shutdown(0));
  process.once('SIGINT', () => void shutdown(0));
  // If the runner dies, stdin closes: don't leave a server (and a bench database) behind.
  process.stdin.on('end', () => void shutdown(0));
  process.stdin.on('error', () => void shutdown(0));
  const reply = (value: object) => process.stdout.write(`${JSON.stringify(value)}\n`);
  createInterface({ input: process.stdin }).on('line', (line) => {
    const cmd = line.trim();
    if (cmd === 'stats') {
      const cpu = process.cpuUsage();
      reply({ stats: { queries: queryCount, cpuUser: cpu.user, cpuSystem: cpu.system } });
    } else if (cmd === 'profile-start') {
      void profiler.start().then(() => reply({ profiling: true }));
    } else if (cmd) {
      say(`unknown command ${JSON.stringify(cmd)}`);
    }
  });
  countQueries();

  try {
    const started = mode === 'bare' ? await startBare() : await startTerapi(mode);
    app = started.app;
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    if (!address || typeof address === 'string') throw new Error('no TCP address');
    const line: ReadyLine = { ...started.ready, port: address.port, pid: process.pid };
    process.stdout.write(`${JSON.stringify(line)}\n`);
  } catch (err) {
    say(`failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await shutdown(1);
  }
}

void main();
