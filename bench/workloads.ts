/**
 * Shared pieces of the workload benchmarks (bench/ingest.ts, bench/records-read.ts, bench/actions.ts):
 * the bench-only functions registered with `extraFunctions`, a deterministic ~1 KB record
 * generator, the real app built as `terapi serve` builds it (services, optional workers, real
 * Redis with a unique queue prefix), its own Postgres database (created and dropped), and the
 * CPU/noise accounting used by bench/run.ts.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import pino from 'pino';
import { z } from 'zod';
import { type AppConfig, buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { type Database, openDatabase, queryRows } from '../src/db/client.js';
import { defineAction, defineSync, type FunctionDefinition } from '../src/functions/define.js';
import { GithubIssue } from '../src/functions/library/github.js';
import { createLogger } from '../src/lib/logger.js';
import { contentHash, type PreparedRecord } from '../src/records/batch.js';
import { createVault, generateKeySpec, parseEncryptionKeys } from '../src/lib/vault.js';
import { loadCatalog } from '../src/providers/catalog.js';
import { createRedis } from '../src/queue/redis.js';
import { createServices, type Services } from '../src/services.js';
import { startWorkers, type Workers } from '../src/workers.js';

export const root = path.resolve(import.meta.dirname, '..');
export const resultsDir = path.join(root, 'bench', 'results');
export const pgAdminUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
export const redisUrl = process.env.BENCH_REDIS_URL ?? 'redis://127.0.0.1:6379';

export const argv = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'] as const;
  }),
);
export const arg = (name: string, fallback: string) => argv.get(name) ?? fallback;
export const numArg = (name: string, fallback: number) => Number(argv.get(name) ?? fallback);

export const say = (msg: string) => process.stderr.write(`${msg}\n`);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------------------------------------
// Records and bench-only functions

/** The model of the ingest sync: GitHub's issue schema from the built-in library (urls, datetimes, regexes). */
export const BENCH_MODEL = 'BenchIssue';
export const INGEST_SYNC = 'bench-ingest';
export const NOOP_ACTION = 'bench-noop';
export const PROVIDER = 'github';
export const PROVIDER_CONFIG_KEY = 'github-bench';

const WORDS =
  'the of and to in is that for it as was with be by on not he this are or his from at which but have an they you were her she there one all we their can has more been if no when will would who so'.split(
    ' ',
  );

/** 1,009 distinct issue bodies of ~620 characters (pseudo-random words), so generating a record costs little. */
const BODIES = Array.from({ length: 1009 }, (_, k) => {
  let seed = (k * 2654435761 + 12345) >>> 0;
  let body = '';
  while (body.length < 620) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    body += `${WORDS[(seed >>> 8) % WORDS.length]} `;
  }
  return body.trimEnd();
});

/**
 * Record `i` of the ingest stream as a provider-shaped object (z.input of GithubIssue), about
 * 1 KB as JSON. `generation` changes the title and `updated_at`, so a new generation rewrites
 * every record and the same generation rewrites none.
 */
/** Records as the store keeps them (JSON text and content hash), prepared outside a sync run. */
export function prepareRecords(items: readonly Record<string, unknown>[]): PreparedRecord[] {
  return items.map((item) => {
    const json = JSON.stringify(item);
    return { id: String(item.id), json, hash: contentHash(json) };
  });
}

export function benchIssue(i: number, generation = 0): Record<string, unknown> {
  const body = BODIES[i % BODIES.length]!;
  const created = new Date(Date.UTC(2024, 0, 1) + i * 60_000).toISOString();
  const updated = new Date(Date.UTC(2025, 0, 1) + i * 60_000 + generation * 1000).toISOString();
  return {
    id: String(1_000_000_000 + i),
    number: i + 1,
    title: `Issue ${i + 1}${generation ? ` (v${generation})` : ''}: ${WORDS[i % WORDS.length]} ${WORDS[(i * 7) % WORDS.length]} fails when retrying`,
    state: i % 3 === 0 ? 'closed' : 'open',
    body,
    user_login: `user-${i % 997}`,
    labels: ['bug', `priority-${i % 4}`, `area-${i % 17}`],
    assignees: [`maintainer-${i % 13}`, `maintainer-${(i + 5) % 13}`],
    comments: i % 23,
    html_url: `https://github.com/acme/widgets/issues/${i + 1}`,
    repository: 'acme/widgets',
    created_at: created,
    updated_at: updated,
    closed_at: i % 3 === 0 ? updated : null,
  };
}

/** What the next ingest run does, and what it measured (set by bench/ingest.ts, read by the sync's exec). */
export const ingestPlan = {
  records: 100_000,
  batchSize: 1000,
  generation: 0,
  /** Filled by exec: time spent inside ctx.batchSave, generating the records, and the whole exec. */
  result: { saveMs: 0, generateMs: 0, execMs: 0, batches: 0, done: false as boolean },
};

export const benchFunctions: Record<string, readonly FunctionDefinition[]> = {
  [PROVIDER]: [
    defineSync({
      name: INGEST_SYNC,
      description: 'bench only: generates ingestPlan.records issues in memory and saves them with batchSave',
      models: { [BENCH_MODEL]: GithubIssue },
      frequency: '1d',
      syncType: 'incremental',
      autoStart: false,
      async exec(ctx) {
        // `done` is written later; without the assertion its type would be the literal `false`.
        // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
        const r = (ingestPlan.result = { saveMs: 0, generateMs: 0, execMs: 0, batches: 0, done: false as boolean });
        const started = performance.now();
        for (let from = 0; from < ingestPlan.records; from += ingestPlan.batchSize) {
          const g = performance.now();
          const items: Record<string, unknown>[] = [];
          for (let i = from; i < Math.min(from + ingestPlan.batchSize, ingestPlan.records); i++)
            items.push(benchIssue(i, ingestPlan.generation));
          const s = performance.now();
          r.generateMs += s - g;
          await ctx.batchSave(BENCH_MODEL, items as never[]);
          r.saveMs += performance.now() - s;
          r.batches++;
        }
        r.execMs = performance.now() - started;
        r.done = true;
      },
    }),
    defineAction({
      name: NOOP_ACTION,
      description: 'bench only: does nothing and answers { ok: true }',
      input: z.object({}).loose(),
      output: z.object({ ok: z.boolean() }),
      async exec() {
        return { ok: true };
      },
    }),
  ],
};

// ---------------------------------------------------------------------------------------------
// Database, Redis, app

export interface BenchDatabase {
  database: Database;
  kind: 'postgres' | 'pglite';
  dbName?: string;
  url?: string;
  drop(): Promise<void>;
}

export async function adminQuery<T extends pg.QueryResultRow = pg.QueryResultRow>(
  text: string,
  values: unknown[] = [],
  url = pgAdminUrl,
): Promise<T[]> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return (await c.query<T>(text, values)).rows;
  } finally {
    await c.end();
  }
}

/** A fresh migrated database: `<BENCH_DB_PREFIX or terapi_bench>_<random>` on BENCH_PG_URL (dropped by `drop`), or in-memory PGlite. */
export async function createBenchDatabase(kind: 'postgres' | 'pglite', poolSize = 20): Promise<BenchDatabase> {
  if (kind === 'pglite') {
    const database = await openDatabase({});
    await database.migrate();
    return { database, kind, drop: () => database.close() };
  }
  const prefix = /^[a-z_][a-z0-9_]{0,40}$/.test(process.env.BENCH_DB_PREFIX ?? '') ? process.env.BENCH_DB_PREFIX : 'terapi_bench';
  const dbName = `${prefix}_${randomBytes(6).toString('hex')}`;
  await adminQuery(`CREATE DATABASE ${dbName}`);
  const url = new URL(pgAdminUrl);
  url.pathname = `/${dbName}`;
  let dropping = false;
  const database = await openDatabase({
    databaseUrl: url.toString(),
    poolSize,
    // DROP … WITH (FORCE) terminates clients the pool has not finished closing: expected then.
    onError: (err) => dropping || say(`database error: ${err.message}`),
  });
  await database.migrate();
  let dropped = false;
  return {
    database,
    kind,
    dbName,
    url: url.toString(),
    async drop() {
      if (dropped) return;
      dropped = true;
      await database.close().catch(() => undefined);
      dropping = true;
      await adminQuery(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
      say(`dropped database ${dbName}`);
    },
  };
}

/** Deletes every Redis key of a queue prefix (BullMQ keys are `<prefix>:<queue>:…`). */
export async function deleteRedisPrefix(prefix: string): Promise<number> {
  const redis = createRedis({ url: redisUrl }, { lazyConnect: true, maxRetriesPerRequest: 2 });
  redis.on('error', () => {});
  let n = 0;
  try {
    await redis.connect();
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
      cursor = next;
      if (keys.length) n += await redis.del(...keys);
    } while (cursor !== '0');
  } finally {
    redis.disconnect();
  }
  return n;
}

export interface BenchApp {
  app: FastifyInstance;
  services: Services;
  workers?: Workers;
  db: BenchDatabase;
  config: AppConfig;
  key: string;
  environmentId: string;
  connectionId: string;
  /** Primary key of the seeded connection (the records store's `connection_pk`). */
  connectionPk: number;
  /** Set once listening. */
  origin?: string;
  /** app.inject with the environment's key; throws on a status ≥ 300 unless `allow` lists it. */
  call(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    url: string,
    payload?: object,
    allow?: number[],
  ): Promise<{ status: number; json: unknown; body: string }>;
  close(): Promise<void>;
}

/**
 * The real app, constructed as src/main.ts does for `serve` (createServices shared by buildApp and,
 * with `workers`, startWorkers), configured by the real config loader with its defaults, plus the
 * bench functions. Seeds one account and environment, one `github` integration and one connection
 * with a valid OAUTH2 token.
 */
export async function startBenchApp(opts: {
  db: 'postgres' | 'pglite';
  workers: boolean;
  logLevel?: string;
  env?: Record<string, string>;
}): Promise<BenchApp> {
  const db = await createBenchDatabase(opts.db);
  const prefix = `terapi-bench-${randomBytes(4).toString('hex')}`;
  const logLevel = opts.logLevel ?? process.env.BENCH_LOG_LEVEL ?? 'warn';
  const config = loadConfig({ LOG_LEVEL: logLevel, TERAPI_QUEUE_PREFIX: prefix, REDIS_URL: redisUrl, ...opts.env });
  const logger = createLogger({ level: logLevel, destination: pino.destination({ dest: 2, sync: false }) });
  const vault = createVault(parseEncryptionKeys(generateKeySpec()));
  const redis = { url: redisUrl };
  const deps = { config, database: db.database, vault, catalog: loadCatalog(), logger, redis, extraFunctions: benchFunctions };
  const services = await createServices(deps);
  const app = await buildApp({ ...deps, services });
  await app.ready();
  const workers = opts.workers ? await startWorkers({ services, config, redis, log: logger }) : undefined;

  const account = await services.environments.createAccount('bench');
  const { env, secretKey } = await services.environments.createEnvironment(account.id, 'bench');
  const call: BenchApp['call'] = async (method, url, payload, allow = []) => {
    const res = await app.inject({ method, url, ...(payload && { payload }), headers: { authorization: `Bearer ${secretKey}` } });
    if (res.statusCode >= 300 && !allow.includes(res.statusCode)) throw new Error(`${method} ${url} → ${res.statusCode} ${res.body}`);
    let json: unknown;
    try {
      json = res.json();
    } catch {
      json = undefined;
    }
    return { status: res.statusCode, json, body: res.body };
  };
  await call('POST', '/integration', {
    provider_config_key: PROVIDER_CONFIG_KEY,
    provider: PROVIDER,
    oauth_client_id: 'bench-client',
    oauth_client_secret: 'bench-secret',
  });
  const connectionId = 'bench-conn';
  const expiresAt = new Date(Date.now() + 6 * 3_600_000).toISOString();
  await call('POST', '/connection', {
    provider_config_key: PROVIDER_CONFIG_KEY,
    connection_id: connectionId,
    credentials: {
      type: 'OAUTH2',
      access_token: `gho_${randomBytes(18).toString('hex')}`,
      refresh_token: `ghr_${randomBytes(18).toString('hex')}`,
      expires_at: expiresAt,
    },
  });
  const [row] = await queryRows<{ id: number | string }>(
    db.database.db,
    sql`SELECT id FROM connections WHERE connection_id = ${connectionId}`,
  );
  const connectionPk = Number(row!.id);

  let closed = false;
  const bench: BenchApp = {
    app,
    services,
    workers,
    db,
    config,
    key: secretKey,
    environmentId: env.id,
    connectionId,
    connectionPk,
    call,
    async close() {
      if (closed) return;
      closed = true;
      const step = async (what: string, fn: () => Promise<unknown>) => {
        try {
          await fn();
        } catch (err) {
          say(`cleanup (${what}) failed: ${err instanceof Error ? err.message : String(err)}`);
        }
      };
      await step('workers', async () => workers?.stop());
      await step('app', () => app.close());
      await step('services', () => services.close());
      await step('database', () => db.drop());
      await step('redis keys', async () => say(`deleted ${await deleteRedisPrefix(prefix)} redis keys of ${prefix}`));
    },
  };
  return bench;
}

/** Listens on 127.0.0.1 on a free port. */
export async function listen(b: BenchApp): Promise<string> {
  await b.app.listen({ host: '127.0.0.1', port: 0 });
  const address = b.app.server.address();
  if (!address || typeof address === 'string') throw new Error('no TCP address');
  b.origin = `http://127.0.0.1:${address.port}`;
  return b.origin;
}

/**
 * Stops the process by itself: cleanup on SIGINT/SIGTERM, and a hard limit after which cleanup
 * runs and the process exits 1 (`--max-seconds`, default given per bench).
 */
export function guard(cleanup: () => Promise<void>, maxSeconds: number): void {
  let done = false;
  const stop = async (code: number, why: string) => {
    if (done) return;
    done = true;
    say(why);
    const hard = setTimeout(() => process.exit(code || 1), 30_000);
    hard.unref();
    await cleanup().catch((err: unknown) => say(`cleanup failed: ${String(err)}`));
    process.exit(code);
  };
  process.once('SIGINT', () => void stop(130, 'interrupted: cleaning up'));
  process.once('SIGTERM', () => void stop(143, 'terminated: cleaning up'));
  const t = setTimeout(() => void stop(1, `time limit of ${maxSeconds} s reached: cleaning up`), maxSeconds * 1000);
  t.unref();
}

// ---------------------------------------------------------------------------------------------
// CPU and noise accounting (the method of bench/run.ts)

const clkTck = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

export function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clkTck;
  } catch {
    return undefined;
  }
}

/** CPU ms per local postgres process: the given backends plus the server's auxiliary processes (WAL writer, checkpointer, …). */
export function postgresCpu(backends: Set<number>): Map<number, number> {
  const out = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== 'postgres') continue;
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (/postgres: [^:]*: \S+ \S+ \S+/.test(cmd) && !backends.has(Number(e))) continue;
    } catch {
      continue;
    }
    const ms = procCpuMs(Number(e));
    if (ms !== undefined) out.set(Number(e), ms);
  }
  return out;
}

export function machineBusyMs(): number {
  try {
    const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
    const [user, nice, system, , , irq, softirq, steal] = ticks.map(Number);
    return ((user! + nice! + system! + irq! + softirq! + steal!) * 1000) / clkTck;
  } catch {
    return Number.NaN;
  }
}

/** Waits until the machine has been quiet (< 0.25 cores busy) for 2 s, at most `--quiet-wait` s (default 120, 0 disables). */
export async function waitForQuiet(): Promise<void> {
  const maxS = numArg('quiet-wait', 120);
  if (!maxS) return;
  const started = Date.now();
  let quiet = 0;
  let last = machineBusyMs();
  let said = false;
  while (Date.now() - started < maxS * 1000) {
    await sleep(1000);
    const now = machineBusyMs();
    const cores = (now - last) / 1000;
    last = now;
    if (cores < 0.25) {
      if (++quiet >= 2) return;
    } else {
      quiet = 0;
      if (!said) say(`  waiting for the machine to be quiet (${cores.toFixed(2)} cores busy)…`);
      said = true;
    }
  }
  say(`  machine still busy after ${maxS} s; measuring anyway (see "other load")`);
}

export async function backendsOf(dbName: string | undefined): Promise<Set<number>> {
  if (!dbName) return new Set();
  const rows = await adminQuery<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [dbName]);
  return new Set(rows.map((r) => r.pid));
}

export interface CpuWindow {
  wallMs: number;
  /** CPU of the processes given (this one by default), of Postgres (bench backends + auxiliaries), and of everything else. */
  processMs: number;
  postgresMs: number;
  otherMs: number;
}

/** Starts a CPU window; `end()` returns the CPU used meanwhile. Backends are looked up at start and end. */
export async function cpuWindow(dbName: string | undefined, pids: number[] = []): Promise<{ end(): Promise<CpuWindow> }> {
  const backendsA = await backendsOf(dbName);
  const pgA = postgresCpu(backendsA);
  const own = process.cpuUsage();
  const others = new Map(pids.map((p) => [p, procCpuMs(p) ?? 0]));
  const machineA = machineBusyMs();
  const t0 = performance.now();
  return {
    async end() {
      const wallMs = performance.now() - t0;
      const machineB = machineBusyMs();
      const backendsB = new Set([...backendsA, ...(await backendsOf(dbName))]);
      const pgB = postgresCpu(backendsB);
      let postgresMs = 0;
      for (const [pid, ms] of pgB) postgresMs += ms - (pgA.get(pid) ?? 0);
      const o = process.cpuUsage(own);
      let processMs = (o.user + o.system) / 1000;
      for (const [pid, ms] of others) processMs += (procCpuMs(pid) ?? ms) - ms;
      return { wallMs, processMs, postgresMs, otherMs: machineB - machineA - processMs - postgresMs };
    },
  };
}

export function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memGiB: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

export function codeVersion() {
  const git = (...a: string[]) => {
    try {
      return execFileSync('git', a, { cwd: root, encoding: 'utf8' }).trim();
    } catch {
      return undefined;
    }
  };
  const dirty = git('status', '--porcelain', '--', 'src', 'migrations');
  return { commit: git('rev-parse', 'HEAD'), srcDirtyFiles: dirty === undefined ? undefined : dirty.split('\n').filter(Boolean) };
}

export async function postgresSettings(): Promise<Record<string, string>> {
  const rows = await adminQuery<{ name: string; setting: string }>(
    `SELECT name, setting FROM pg_settings WHERE name IN ('server_version','shared_buffers','synchronous_commit','fsync','wal_level','max_wal_size','checkpoint_timeout')`,
  );
  return Object.fromEntries(rows.map((r) => [r.name, r.setting]));
}

export function markdownTable(head: string[], body: (string | number)[][]): string {
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i ? '--:' : ':--')).join('|')}|`];
  for (const r of body) lines.push(`| ${r.join(' | ')} |`);
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// Server children: the app runs in its own process, so the load generator never shares its event loop

export interface ChildHandle<R> {
  ready: R & { pid: number };
  pid: number;
  /** Sends a command line on stdin; resolves with the next JSON line that has `key`. */
  command<T>(cmd: string, key: string): Promise<T>;
  stop(): Promise<void>;
}

/**
 * Parent side: `node --import tsx <script> --serve=<mode>`; the child prints one JSON ready line on
 * stdout, answers commands on stdin, and stops (cleaning up) on SIGTERM or when its stdin closes.
 */
export async function startChild<R>(
  script: string,
  mode: string,
  env: Record<string, string> = {},
  timeoutMs = 300_000,
): Promise<ChildHandle<R>> {
  const { spawn } = await import('node:child_process');
  const { createInterface } = await import('node:readline');
  // The child gets this process's options too (--records, --limit, …).
  // BENCH_CPU_PROF_DIR=<dir>: the child writes a V8 CPU profile there when it exits (node --cpu-prof).
  const prof = process.env.BENCH_CPU_PROF_DIR
    ? ['--cpu-prof', `--cpu-prof-dir=${process.env.BENCH_CPU_PROF_DIR}`, '--cpu-prof-interval=500']
    : [];
  const proc = spawn(process.execPath, [...prof, '--import', 'tsx', script, ...process.argv.slice(2), `--serve=${mode}`], {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout });
  const waiters: { key: string; resolve(v: unknown): void }[] = [];
  let onReady: ((v: unknown) => void) | undefined;
  const ready = new Promise<unknown>((resolve, reject) => {
    onReady = resolve;
    proc.once('exit', (code) => reject(new Error(`${mode} child exited with ${code} before it was ready`)));
    setTimeout(() => reject(new Error(`${mode} child not ready after ${timeoutMs} ms`)), timeoutMs).unref();
  });
  lines.on('line', (line) => {
    let msg: Record<string, unknown>;
    try {
      msg = JSON.parse(line);
    } catch {
      say(`[${mode}] ${line}`);
      return;
    }
    if (onReady && 'ready' in msg) {
      onReady(msg.ready);
      onReady = undefined;
      return;
    }
    const i = waiters.findIndex((w) => w.key in msg);
    if (i >= 0) {
      const w = waiters.splice(i, 1)[0]!;
      w.resolve(msg[w.key]);
    }
  });
  let r: R & { pid: number };
  try {
    r = (await ready) as R & { pid: number };
  } catch (err) {
    proc.kill('SIGTERM');
    throw err;
  }
  return {
    ready: r,
    pid: proc.pid!,
    command<T>(cmd: string, key: string) {
      return new Promise<T>((resolve) => {
        waiters.push({ key, resolve: resolve });
        proc.stdin.write(`${cmd}\n`);
      });
    },
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r2) => proc.once('exit', r2));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 40_000);
      await exited;
      clearTimeout(t);
    },
  };
}

/**
 * Child side: starts, prints `{"ready": …}`, answers `stats` (process CPU) and the extra commands,
 * and runs `close` once on SIGTERM/SIGINT or when stdin closes (the parent died).
 */
export async function serveChild(
  start: () => Promise<{ ready: object; close: () => Promise<void>; commands?: Record<string, () => Promise<unknown>> }>,
): Promise<void> {
  const { createInterface } = await import('node:readline');
  let close: (() => Promise<void>) | undefined;
  let stopping = false;
  const shutdown = async (code: number) => {
    if (stopping) return;
    stopping = true;
    const hard = setTimeout(() => process.exit(code || 1), 30_000);
    hard.unref();
    try {
      await close?.();
    } catch (err) {
      say(`child cleanup failed: ${String(err)}`);
      code ||= 1;
    }
    process.exit(code);
  };
  process.once('SIGTERM', () => void shutdown(0));
  process.once('SIGINT', () => void shutdown(0));
  process.stdin.on('end', () => void shutdown(0));
  process.stdin.on('error', () => void shutdown(0));
  const reply = (v: object) => process.stdout.write(`${JSON.stringify(v)}\n`);
  try {
    const s = await start();
    close = s.close;
    createInterface({ input: process.stdin }).on('line', (line) => {
      const cmd = line.trim();
      if (cmd === 'stats') {
        const c = process.cpuUsage();
        reply({ stats: { cpuUser: c.user, cpuSystem: c.system } });
      } else if (s.commands?.[cmd]) {
        void s.commands[cmd]().then((v) => reply({ [cmd]: v }));
      } else if (cmd) say(`unknown command ${cmd}`);
    });
    reply({ ready: { ...s.ready, pid: process.pid } });
  } catch (err) {
    say(`child failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    await shutdown(1);
  }
}

export function percentile(sorted: ArrayLike<number>, p: number): number {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}
