/**
 * Measures Terapi on a database seeded by bench/scale/seed.ts. Usage:
 *
 *   npx tsx bench/scale/measure.ts [--db=terapi_scale] [--duration=5] [--connections=20] [--only=token,delete,…]
 *                                  [--purge-timeout=300] [--invalidations=1000] [--out=scale.json]
 *
 * Starts bench/scale/server.ts (API + workers, Postgres at --pg, Redis at --redis with a queue
 * prefix of its own), then measures, in this order: token and Nango connection reads (p50/p99,
 * autocannon over many distinct connections), connection import, `GET /sync/status` on the
 * integration with exactly 10k syncs (following cursors if it pages), `GET /records` with
 * `modified_after` on the connection with 100k records, cache invalidation cost, retention
 * (housekeeping), scheduler ticks, deleting the 100k-record connection (request time, then the
 * time until its records are gone), and the API process's RSS. Each measurement that fails (a
 * route or function that does not exist yet, an error answer) is reported as "n/a" with the
 * reason; the others still run. Prints a table and writes bench/results/scale.json.
 *
 * Deleting a connection changes the database: seed again before measuring again.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';
import pg from 'pg';
import {
  connectionIdOf,
  integrationKeyOf,
  integrationOf,
  SCALE_ENCRYPTION_KEY,
  SCALE_MODEL,
  SCALE_SECRET_KEY,
  SCALE_SYNC_NAME,
  type ScaleLayout,
} from './seed-sql.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const argv = new Map(
  process.argv.slice(2).map((a) => {
    const [k, ...v] = a.replace(/^--/, '').split('=');
    return [k!, v.join('=')] as const;
  }),
);
const dbName = argv.get('db') ?? 'terapi_scale';
const adminUrl = argv.get('pg') ?? process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const redisUrl = argv.get('redis') ?? 'redis://127.0.0.1:6379';
const duration = Number(argv.get('duration') ?? 5);
const concurrency = Number(argv.get('connections') ?? 20);
const purgeTimeoutS = Number(argv.get('purge-timeout') ?? 300);
const invalidations = Number(argv.get('invalidations') ?? 1000);
const only = argv.get('only')?.split(',');
const dbUrl = (() => {
  const u = new URL(adminUrl);
  u.pathname = `/${dbName}`;
  return u.toString();
})();
/** The issue's targets. */
const TARGET = { p99Ms: 50, tickMs: 100, retentionPerDay: 24_000_000 };

const say = (msg: string) => process.stderr.write(`[scale measure] ${msg}\n`);
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const round = (x: number, d = 1) => Math.round(x * 10 ** d) / 10 ** d;

// ---------------------------------------------------------------------------------------------
// The seeded database

const db = new pg.Client({ connectionString: dbUrl });
await db.connect();
const { rows: commentRows } = await db.query<{ c: string | null }>(
  'SELECT shobj_description(oid, $2) AS c FROM pg_database WHERE datname = $1',
  [dbName, 'pg_database'],
);
if (!commentRows[0]?.c) throw new Error(`${dbName} has no seed manifest: run bench/scale/seed.ts first`);
const manifest = JSON.parse(commentRows[0].c) as { layout: ScaleLayout; environmentId: string; seededAt: string; retentionDays: number };
const layout = manifest.layout;
const count = async (text: string, values: unknown[] = []) => Number((await db.query<{ n: string }>(text, values)).rows[0]!.n);

// ---------------------------------------------------------------------------------------------
// The server

interface Server {
  proc: ChildProcess;
  port: number;
  command<T = Record<string, unknown>>(cmd: string, timeoutMs?: number): Promise<T>;
}

async function startServer(): Promise<Server> {
  const prefix = `scale-${randomBytes(4).toString('hex')}`;
  const proc = spawn(process.execPath, ['--import', 'tsx', 'bench/scale/server.ts'], {
    cwd: root,
    env: {
      ...process.env,
      DATABASE_URL: dbUrl,
      REDIS_URL: redisUrl,
      TERAPI_ENCRYPTION_KEY: SCALE_ENCRYPTION_KEY,
      TERAPI_QUEUE_PREFIX: prefix,
      TERAPI_RETENTION_DAYS: String(manifest.retentionDays),
      LOG_LEVEL: argv.get('log-level') ?? 'warn',
    },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout });
  const waiting: ((v: Record<string, unknown>) => void)[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    lines.on('line', (l) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(l) as Record<string, unknown>;
      } catch {
        return;
      }
      if (typeof msg.port === 'number' && typeof msg.pid === 'number') return resolve(msg.port);
      waiting.shift()?.(msg);
    });
    proc.once('exit', (code) => reject(new Error(`server exited ${code}`)));
  });
  say(`server on port ${port}, queue prefix ${prefix}`);
  return {
    proc,
    port,
    // One command at a time: answers come back in order.
    command: <T>(cmd: string, timeoutMs = 600_000) =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no reply to ${cmd}`)), timeoutMs);
        waiting.push((v) => {
          clearTimeout(timer);
          if (typeof v.error === 'string') reject(new Error(v.error));
          else resolve(v as T);
        });
        proc.stdin.write(`${cmd}\n`);
      }),
  };
}

const stopServer = (s: Server) =>
  new Promise<void>((resolve) => {
    if (s.proc.exitCode !== null || s.proc.signalCode !== null) return resolve();
    s.proc.once('exit', () => resolve());
    s.proc.kill('SIGTERM');
  });

// ---------------------------------------------------------------------------------------------
// Load and requests

const auth = { authorization: `Bearer ${SCALE_SECRET_KEY}` };
interface Req {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  headers?: Record<string, string>;
  body?: string;
}
interface LoadResult {
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  non2xx: number;
  errors: number;
  statuses: Record<string, number>;
}

/** autocannon for `seconds`, each socket cycling through its own slice of `requests`; float latencies. */
function load(server: Server, requests: Req[], seconds: number, once = false): Promise<LoadResult> {
  let next = 0;
  const per = Math.max(1, Math.floor(requests.length / concurrency));
  const lat: number[] = [];
  const statuses: Record<string, number> = {};
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${server.port}`,
        connections: concurrency,
        pipelining: 1,
        duration: seconds,
        // `once`: each socket stops after its slice (every request sent once), or at `seconds`.
        ...(once ? { maxConnectionRequests: per } : {}),
        timeout: 30,
        setupClient: (client) => {
          // Fewer requests than sockets: each socket repeats one of them.
          const mine = requests.length >= concurrency ? requests.slice(next * per, next * per + per) : [requests[next % requests.length]!];
          next++;
          (client as unknown as { setRequests(r: object[]): void }).setRequests(
            mine.map((r) => ({ ...r, headers: { ...auth, ...(r.body ? { 'content-type': 'application/json' } : {}), ...r.headers } })),
          );
        },
      },
      (err, result) => {
        if (err) return reject(err);
        const sorted = lat.sort((a, b) => a - b);
        const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? NaN;
        resolve({
          rps: Math.round(result.requests.total / result.duration),
          p50: round(pct(50), 2),
          p99: round(pct(99), 2),
          requests: result.requests.total,
          non2xx: result.non2xx,
          errors: result.errors + result.timeouts,
          statuses,
        });
      },
    );
    instance.on('response', (_c: unknown, status: number, _b: number, ms: number) => {
      statuses[status] = (statuses[status] ?? 0) + 1;
      if (status >= 200 && status < 300) lat.push(ms);
    });
  });
}

async function call(server: Server, req: Req): Promise<{ status: number; ms: number; body: unknown }> {
  const started = performance.now();
  const res = await fetch(`http://127.0.0.1:${server.port}${req.path}`, {
    method: req.method,
    headers: { ...auth, ...(req.body ? { 'content-type': 'application/json' } : {}), ...req.headers },
    body: req.body,
  });
  const text = await res.text();
  const ms = performance.now() - started;
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: kept as text for the error message
  }
  return { status: res.status, ms, body };
}

async function expectOk(server: Server, req: Req) {
  const r = await call(server, req);
  if (r.status < 200 || r.status >= 300) throw new Error(`${req.method} ${req.path} → ${r.status} ${JSON.stringify(r.body).slice(0, 300)}`);
  return r;
}

/** `count` connection numbers spread evenly over all connections (a stride, so every integration appears). */
function spreadConnections(n: number): number[] {
  const total = layout.connections;
  const k = Math.min(n, total);
  return Array.from({ length: k }, (_, i) => Math.floor((i * total) / k));
}
const tokenPath = (n: number) => `/auth/token/${integrationKeyOf(integrationOf(layout, n))}/${connectionIdOf(n)}`;
const nangoPath = (n: number) => `/connections/${connectionIdOf(n)}?provider_config_key=${integrationKeyOf(integrationOf(layout, n))}`;
const median = (xs: number[]) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length ? (a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2) : NaN;
};

// ---------------------------------------------------------------------------------------------
// Measurements

interface Row {
  measurement: string;
  value: string;
  target?: string;
  ok?: boolean;
}
const rows: Row[] = [];
const results: Record<string, unknown> = {};

/** Runs one measurement; a failure is recorded as n/a with its reason, and the next one runs. */
async function measure(name: string, work: () => Promise<void>) {
  if (only && !only.some((o) => name.startsWith(o))) return;
  say(`${name}…`);
  try {
    await work();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    say(`${name}: n/a (${reason})`);
    rows.push({ measurement: name, value: `n/a: ${reason.slice(0, 120)}` });
    results[name] = { na: reason };
  }
}
let baselineRps: number | undefined;
const p99Row = (name: string, r: LoadResult) => {
  rows.push({
    measurement: name,
    value: `${r.rps} req/s${baselineRps ? ` (${round(r.rps / baselineRps, 2)}× bare)` : ''}, p50 ${r.p50} ms, p99 ${r.p99} ms${r.non2xx || r.errors ? ` (${r.non2xx} non-2xx, ${r.errors} errors)` : ''}`,
    target: `p99 ≤ ${TARGET.p99Ms} ms`,
    ok: r.p99 <= TARGET.p99Ms && !r.non2xx && !r.errors,
  });
};
const requireClean = (r: LoadResult) => {
  if (r.requests > 0 && r.non2xx === r.requests) throw new Error(`every request failed: ${JSON.stringify(r.statuses)}`);
};

const server = await startServer();
const loadavgAtStart = os.loadavg();
let stopped = false;
const cleanup = async () => {
  if (stopped) return;
  stopped = true;
  await stopServer(server);
  await db.end();
};
process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));

try {
  const idle = await server.command<{ rss: number; heapUsed: number }>('stats');
  const rssIdleMB = round(idle.rss / 1e6);
  results.rssIdleMB = rssIdleMB;

  await measure('baseline', async () => {
    // A bare Fastify route answering the token route's bytes (bench/server.ts bare), measured the
    // same way: how fast this machine serves HTTP right now, to read the numbers below against.
    const bare = spawn(process.execPath, ['--import', 'tsx', 'bench/server.ts', 'bare'], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
    try {
      const port = await new Promise<number>((resolve, reject) => {
        createInterface({ input: bare.stdout }).on('line', (l) => {
          const msg = JSON.parse(l) as { port?: number };
          if (typeof msg.port === 'number') resolve(msg.port);
        });
        bare.once('exit', (code) => reject(new Error(`bare server exited ${code}`)));
      });
      const ids = spreadConnections(1000);
      const r = await load(
        { ...server, port },
        ids.map((n) => ({ method: 'GET', path: tokenPath(n) })),
        duration,
      );
      results.baseline = r;
      baselineRps = r.rps;
      rows.push({ measurement: 'baseline: bare Fastify, same URL and body', value: `${r.rps} req/s, p50 ${r.p50} ms, p99 ${r.p99} ms` });
    } finally {
      bare.kill('SIGTERM');
    }
  });

  await measure('token (1k hot connections)', async () => {
    const ids = spreadConnections(1000);
    await expectOk(server, { method: 'GET', path: tokenPath(ids[0]!) });
    await load(
      server,
      ids.map((n) => ({ method: 'GET', path: tokenPath(n) })),
      2,
    ); // warm-up: fills the cache
    const r = await load(
      server,
      ids.map((n) => ({ method: 'GET', path: tokenPath(n) })),
      duration,
    );
    requireClean(r);
    results['token (1k hot connections)'] = r;
    p99Row('GET /auth/token, 1k connections (cached)', r);
  });

  await measure('token (spread)', async () => {
    // More distinct connections than a run reaches: nearly every request is a cache miss (one indexed read of 1M rows).
    const ids = spreadConnections(Math.min(layout.connections, 400_000));
    const r = await load(
      server,
      ids.map((n) => ({ method: 'GET', path: tokenPath(n) })),
      duration,
    );
    requireClean(r);
    results['token (spread)'] = { ...r, distinct: ids.length };
    p99Row(`GET /auth/token, ${ids.length} distinct connections`, r);
  });

  await measure('nango connection get (spread)', async () => {
    const ids = spreadConnections(Math.min(layout.connections, 400_000)).map((n) => (n + 1) % layout.connections);
    await expectOk(server, { method: 'GET', path: nangoPath(ids[0]!) });
    const r = await load(
      server,
      ids.map((n) => ({ method: 'GET', path: nangoPath(n) })),
      duration,
    );
    requireClean(r);
    results['nango connection get (spread)'] = { ...r, distinct: ids.length };
    p99Row(`Nango GET /connections/{id}, ${ids.length} distinct connections`, r);
  });

  await measure('import', async () => {
    // New connections (upserts that create) on one integration of ~average size.
    const tag = randomBytes(3).toString('hex');
    const key = integrationKeyOf(5 % layout.integrations);
    const expires = new Date(Date.now() + 7 * 86_400_000).toISOString();
    const bodies: Req[] = Array.from({ length: 60_000 }, (_, k) => ({
      method: 'POST',
      path: '/connections',
      body: JSON.stringify({
        provider_config_key: key,
        connection_id: `scale-import-${tag}-${k}`,
        credentials: { type: 'OAUTH2', access_token: `gho_import${tag}${k}`, refresh_token: `ghr_import${tag}${k}`, expires_at: expires },
        metadata: { plan: 'pro' },
      }),
    }));
    const r = await load(server, bodies, duration);
    requireClean(r);
    results.import = r;
    rows.push({
      measurement: `POST /connections (import, ${concurrency} callers)`,
      value: `${r.rps} /s, p50 ${r.p50} ms, p99 ${r.p99} ms${r.non2xx ? ` (${r.non2xx} non-2xx: ${JSON.stringify(r.statuses)})` : ''}`,
      target: `p99 ≤ ${TARGET.p99Ms} ms`,
      ok: r.p99 <= TARGET.p99Ms && !r.non2xx,
    });
  });

  await measure('sync status', async () => {
    const key = layout.bigIntegration.providerConfigKey;
    const expected = layout.bigIntegration.connections;
    const runs: { firstMs: number; totalMs: number; rows: number; pages: number }[] = [];
    // Three times, unless it is slow (seconds per call today): then once is enough.
    const began = performance.now();
    for (let i = 0; i < 3 && (i === 0 || performance.now() - began < 20_000); i++) {
      let cursor: string | undefined;
      let total = 0;
      let pages = 0;
      let firstMs = 0;
      const started = performance.now();
      do {
        const r = await expectOk(server, {
          method: 'GET',
          path: `/sync/status?provider_config_key=${key}&syncs=*${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ''}`,
        });
        if (!pages) firstMs = r.ms;
        pages++;
        const body = r.body as { syncs?: unknown[]; next_cursor?: string | null };
        total += body.syncs?.length ?? 0;
        cursor = typeof body.next_cursor === 'string' && body.next_cursor ? body.next_cursor : undefined;
      } while (cursor && pages < 10_000);
      runs.push({ firstMs: round(firstMs), totalMs: round(performance.now() - started), rows: total, pages });
    }
    const last = runs[runs.length - 1]!;
    const firstMs = median(runs.map((r) => r.firstMs));
    results['sync status'] = { expected, runs };
    rows.push({
      measurement: `GET /sync/status, ${expected} syncs (syncs=*)`,
      value: `first page ${round(firstMs)} ms; all ${last.pages} page(s) ${round(median(runs.map((r) => r.totalMs)))} ms, ${last.rows} rows`,
      target: `page ≤ ${TARGET.p99Ms} ms, ${expected} rows`,
      ok: firstMs <= TARGET.p99Ms && last.rows === expected,
    });
  });

  await measure('records modified_after', async () => {
    const t = layout.deleteTarget;
    // The last 1% of that connection's feed (its records' times rise over 30 days up to the seeding time).
    const after = new Date(new Date(manifest.seededAt).getTime() - 0.01 * 30 * 86_400_000).toISOString();
    const req: Req = {
      method: 'GET',
      path: `/records?model=${SCALE_MODEL}&limit=100&modified_after=${encodeURIComponent(after)}`,
      headers: { 'connection-id': t.connectionId, 'provider-config-key': t.providerConfigKey },
    };
    const first = await expectOk(server, req);
    const got = (first.body as { records?: unknown[] }).records?.length ?? 0;
    if (!got) throw new Error('no records returned');
    const r = await load(server, [req], Math.max(2, Math.round(duration / 2)));
    requireClean(r);
    results['records modified_after'] = { ...r, recordsPerPage: got, connectionRecords: t.records };
    p99Row(`GET /records?modified_after (last 1% of ${t.records} records, pages of 100)`, r);
  });

  await measure('cache invalidation', async () => {
    // The token runs above filled the connection cache; each `conn:<id>` notification invalidates one entry.
    const cpu = async () => {
      const s = await server.command<{ cpuUser: number; cpuSystem: number }>('stats');
      return s.cpuUser + s.cpuSystem;
    };
    // Fill the connection cache first (it holds 50k entries today): read up to 50k distinct connections, for at most --fill-seconds.
    const fillIds = spreadConnections(Math.min(50_000, layout.connections)).map((n) => (n + 2) % layout.connections);
    const fill = await load(
      server,
      fillIds.map((n) => ({ method: 'GET', path: tokenPath(n) })),
      Number(argv.get('fill-seconds') ?? 30),
      true,
    );
    const windowMs = 3000;
    const idle0 = await cpu();
    await sleep(windowMs);
    const idleUs = (await cpu()) - idle0;
    const ids = spreadConnections(invalidations);
    const before = await cpu();
    await db.query(`SELECT pg_notify('terapi_cache', 'conn:' || (n + 1)) FROM unnest($1::bigint[]) n`, [ids]);
    // Until the process is idle again (at least the same window), counting its CPU.
    let last = before;
    let elapsed = 0;
    for (;;) {
      await sleep(windowMs);
      elapsed += windowMs;
      const now = await cpu();
      const busy = now - last;
      last = now;
      if (busy <= idleUs * 1.5 + 20_000 || elapsed > 300_000) break;
    }
    const usPer = Math.max(0, last - before - (idleUs * elapsed) / windowMs) / ids.length;
    results['cache invalidation'] = {
      invalidations: ids.length,
      usPerInvalidation: round(usPer),
      elapsedMs: elapsed,
      idleUsPerWindow: idleUs,
      cacheFillReads: fill.requests,
    };
    rows.push({
      measurement: `cache invalidation (${ids.length} conn:<id> NOTIFYs after reading ${Math.min(fill.requests, fillIds.length)} distinct connections)`,
      value: `${round(usPer)} µs CPU each`,
    });
  });

  await measure('retention', async () => {
    const cutoff = `now() - make_interval(days => ${manifest.retentionDays})`;
    const expired = () => count(`SELECT count(*) AS n FROM runs WHERE created_at < ${cutoff} AND status IN ('success', 'error')`);
    const before = await expired();
    if (!before) throw new Error('no runs past the retention in this database');
    const started = performance.now();
    const r = await server.command<{ ms: number; result: { runs?: number; events?: number } }>('housekeeping');
    // Deleting may go on in the background: wait while the count still falls (at most 120 s).
    let after = await expired();
    let settled = performance.now();
    for (let prev = -1; after > 0 && after !== prev && performance.now() - started < 120_000;) {
      prev = after;
      await sleep(2000);
      after = await expired();
      if (after !== prev) settled = performance.now();
    }
    const deleted = before - after;
    const seconds = (settled - started) / 1000;
    const perSecond = deleted / Math.max(0.001, seconds);
    // Housekeeping runs every 120 scheduler ticks (10 min at the default 5 s): what it leaves is left until then.
    const perCallDay = deleted * ((86_400 * 1000) / (120 * 5000));
    const perDay = after === 0 ? perSecond * 86_400 : perCallDay;
    results.retention = {
      expiredBefore: before,
      expiredAfter: after,
      deleted,
      callMs: round(r.ms),
      seconds: round(seconds, 2),
      perSecond: Math.round(perSecond),
      perDay: Math.round(perDay),
      returned: r.result,
    };
    rows.push({
      measurement: `retention (one housekeeping pass, ${before} runs expired)`,
      value: `${deleted} deleted in ${round(seconds, 2)} s (${Math.round(perSecond)}/s), ${after} left; ≈ ${(perDay / 1e6).toFixed(1)}M runs/day`,
      target: `≥ ${TARGET.retentionPerDay / 1e6}M/day`,
      ok: perDay >= TARGET.retentionPerDay,
    });
  });

  await measure('scheduler tick', async () => {
    const due = await count(`SELECT count(*) AS n FROM syncs WHERE NOT paused AND next_run_at <= now()`);
    const first = await server.command<{ ms: number; enqueued: number }>('tick');
    const ticks: { ms: number; enqueued: number }[] = [];
    for (let i = 0; i < 5; i++) ticks.push(await server.command<{ ms: number; enqueued: number }>('tick'));
    const ms = median(ticks.map((t) => t.ms));
    results['scheduler tick'] = { dueSyncs: due, first, ticks };
    rows.push({
      measurement: `scheduler tick (${due} syncs due of ${layout.connections})`,
      value: `median ${round(ms)} ms, max ${round(Math.max(...ticks.map((t) => t.ms)))} ms, ${ticks[0]?.enqueued} jobs enqueued (first tick ${round(first.ms)} ms)`,
      target: `≤ ${TARGET.tickMs} ms`,
      ok: ms <= TARGET.tickMs,
    });
  });

  await measure('due query', async () => {
    const times: number[] = [];
    for (let i = 0; i < 5; i++) times.push((await server.command<{ ms: number }>('due-query')).ms);
    results['due query'] = { times };
    rows.push({ measurement: 'due-sync query alone (listRunnableSyncIds, 1000)', value: `median ${round(median(times))} ms` });
  });

  await measure('delete', async () => {
    const t = layout.deleteTarget;
    const pk = t.n + 1;
    const left = () => count('SELECT count(*) AS n FROM records WHERE connection_pk = $1', [pk]);
    const before = await left();
    if (!before) throw new Error(`${t.connectionId} has no records (deleted by an earlier run? seed again)`);
    const started = performance.now();
    const r = await expectOk(server, {
      method: 'DELETE',
      path: `/connections/${t.connectionId}?provider_config_key=${t.providerConfigKey}`,
    });
    // The purge may run on the worker, from a job or from the tick: tick as the scheduler would while waiting.
    let remaining = await left();
    let lastTick = performance.now();
    while (remaining > 0 && performance.now() - started < purgeTimeoutS * 1000) {
      await sleep(250);
      if (performance.now() - lastTick >= 5000) {
        await server.command('tick').catch(() => undefined);
        lastTick = performance.now();
      }
      remaining = await left();
    }
    const purgedMs = performance.now() - started;
    results.delete = { records: before, requestMs: round(r.ms), purgedMs: remaining ? null : round(purgedMs), remaining };
    rows.push({
      measurement: `DELETE /connections/{id} with ${before} records`,
      value: `request ${round(r.ms)} ms; ${remaining ? `${remaining} records left after ${purgeTimeoutS} s` : `records gone after ${round(purgedMs / 1000, 2)} s`}`,
      target: `request ≤ ${TARGET.p99Ms} ms`,
      ok: r.ms <= TARGET.p99Ms && remaining === 0,
    });
  });

  const end = await server.command<{ rss: number; heapUsed: number }>('stats');
  const rssEndMB = round(end.rss / 1e6);
  results.rssEndMB = rssEndMB;
  rows.push({
    measurement: 'API process RSS (serve: api + workers)',
    value: `${rssIdleMB} MB after start, ${rssEndMB} MB at the end`,
  });
} finally {
  await cleanup();
}

console.table(rows.map((r) => ({ ...r, ok: r.ok === undefined ? '' : r.ok ? '✓' : '✗' })));
const commit = (() => {
  try {
    return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
  } catch {
    return undefined;
  }
})();
const out = path.resolve(root, 'bench/results', argv.get('out') ?? 'scale.json');
writeFileSync(
  out,
  `${JSON.stringify(
    {
      benchmark: 'scale (bench/scale/measure.ts)',
      at: new Date().toISOString(),
      commit,
      database: dbName,
      layout,
      seededAt: manifest.seededAt,
      machine: { cpus: os.cpus().length, node: process.version, loadavgAtStart, loadavgAtEnd: os.loadavg() },
      options: { duration, concurrency, purgeTimeoutS, invalidations, syncName: SCALE_SYNC_NAME },
      targets: TARGET,
      table: rows,
      results,
    },
    null,
    2,
  )}\n`,
);
say(`wrote ${path.relative(root, out)}`);
