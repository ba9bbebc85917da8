/**
 * Connection import benchmark: the Nango-compatible single import `POST /connections` at 20
 * concurrent callers (new connections, then re-imports of existing ones), against the same route
 * of a baseline commit in the same run, and the bulk import `POST /connections/import` (NDJSON)
 * of this checkout: imports/s, p50/p99, queries per import, server and Postgres CPU per import.
 *
 *   npx tsx bench/import.ts                                   # before (merge-base with main) and after
 *   npx tsx bench/import.ts --base=<commit> --targets=before,after --duration=5 --warmup=2 --connections=20
 *   npx tsx bench/import.ts --bulk=100000 --chunk=10000 --bulk-webhooks=false
 *
 * Each target is a child process (`--serve=<target>`, this file) running the real app on its own
 * Postgres database (`terapi_bench_import_<random>`, dropped on exit) and real Redis (queue prefix
 * deleted on exit), without workers (nothing sends the recorded webhook events or runs the syncs,
 * so only the import itself is measured). `before` runs the bench helpers and sources of a copy of
 * the baseline commit (`git archive` into the temp directory, sharing this checkout's node_modules);
 * `after` runs this checkout. The integration is GitHub (OAUTH2) with one sync enabled, so every new
 * connection gets its sync row, as in production. Every request carries OAUTH2 credentials with a
 * refresh token and an expiry, metadata and an end user. BENCH_CPU_PROF_DIR=<dir> writes a V8 CPU
 * profile of each child (node --cpu-prof). Results: bench/results/import.json.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import {
  arg,
  argv,
  codeVersion,
  cpuWindow,
  machine,
  markdownTable,
  numArg,
  percentile,
  postgresSettings,
  resultsDir,
  root,
  round,
  say,
  serveChild,
  startChild,
  waitForQuiet,
  guard,
  type ChildHandle,
} from './workloads.js';

const CALLERS = numArg('connections', 20);
const DURATION = numArg('duration', 5);
const WARMUP = numArg('warmup', 2);
const BULK = numArg('bulk', 100_000);
const CHUNK = numArg('chunk', 10_000);
const KEY = 'github-bench';
const SYNC = 'bench-ingest';

interface Ready {
  origin: string;
  key: string;
  dbName?: string;
}

// ---------------------------------------------------------------------------------------------
// Server child

let queries = 0;
/** Counts every statement sent to Postgres (every pooled client), to report statements per import. */
function countQueries() {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- re-applied with the client as `this`
  const original = pg.Client.prototype.query;
  pg.Client.prototype.query = function (this: pg.Client, ...args: unknown[]) {
    queries++;
    return (original as (...a: unknown[]) => unknown).apply(this, args);
  } as typeof original;
}

async function serveTarget(target: string) {
  const codeRoot = target === 'before' ? baseCheckout() : root;
  const w = (await import(pathToFileURL(path.join(codeRoot, 'bench', 'workloads.ts')).href)) as typeof import('./workloads.js');
  countQueries();
  const b = await w.startBenchApp({ db: 'postgres', workers: false });
  try {
    await b.call('POST', `/integration/${KEY}/functions`, { name: SYNC });
    const origin = await w.listen(b);
    return {
      ready: { origin, key: b.key, dbName: b.db.dbName } satisfies Ready,
      close: () => b.close(),
      commands: {
        queries: async () => queries,
        counts: async () => {
          const c = new pg.Client({ connectionString: b.db.url });
          await c.connect();
          try {
            const { rows } = await c.query<{ connections: number; syncs: number; events: number }>(
              'SELECT (SELECT count(*)::int FROM connections) AS connections, (SELECT count(*)::int FROM syncs) AS syncs, (SELECT count(*)::int FROM events) AS events',
            );
            return rows[0];
          } finally {
            await c.end();
          }
        },
      },
    };
  } catch (err) {
    await b.close();
    throw err;
  }
}

/** A copy of the baseline commit's files in the temp directory (made once per commit), with this checkout's node_modules. */
function baseCheckout(): string {
  const commit = execFileSync('git', ['rev-parse', arg('base', 'main')], { cwd: root, encoding: 'utf8' }).trim();
  const dir = path.join(os.tmpdir(), `terapi-bench-import-base-${commit.slice(0, 12)}`);
  if (!existsSync(path.join(dir, 'package.json'))) {
    mkdirSync(dir, { recursive: true });
    execFileSync('sh', ['-c', `git archive ${commit} | tar -x -C ${JSON.stringify(dir)}`], { cwd: root });
    symlinkSync(path.join(root, 'node_modules'), path.join(dir, 'node_modules'));
  }
  return dir;
}

// ---------------------------------------------------------------------------------------------
// Load

const expiresAt = new Date(Date.now() + 6 * 3_600_000).toISOString();
const importBody = (connectionId: string, n: number) => ({
  provider_config_key: KEY,
  connection_id: connectionId,
  credentials: {
    type: 'OAUTH2',
    access_token: `gho_${randomBytes(18).toString('hex')}`,
    refresh_token: `ghr_${randomBytes(18).toString('hex')}`,
    expires_at: expiresAt,
  },
  metadata: { plan: 'pro', seq: n },
  end_user: { id: `user-${n % 5000}`, email: `user-${n % 5000}@example.com` },
});

interface Phase {
  target: string;
  phase: string;
  imports: number;
  seconds: number;
  importsPerS: number;
  p50: number;
  p99: number;
  queriesPerImport: number;
  serverUsPerImport: number;
  postgresUsPerImport: number;
  otherCores: number;
}

/** `CALLERS` loops, each posting one import after the other for `seconds`; ids from `idOf(caller, n)`. */
async function callers(r: Ready, seconds: number, idOf: (caller: number, n: number) => string, expect: number) {
  const latencies: number[] = [];
  const until = performance.now() + seconds * 1000;
  const headers = { authorization: `Bearer ${r.key}`, 'content-type': 'application/json' };
  await Promise.all(
    Array.from({ length: CALLERS }, async (_, caller) => {
      for (let n = 0; performance.now() < until; n++) {
        const body = JSON.stringify(importBody(idOf(caller, n), caller * 1_000_000 + n));
        const t0 = performance.now();
        const res = await fetch(`${r.origin}/connections`, { method: 'POST', headers, body });
        const text = await res.text();
        latencies.push(performance.now() - t0);
        if (res.status !== expect) throw new Error(`import ${idOf(caller, n)}: ${res.status} ${text} (expected ${expect})`);
      }
    }),
  );
  return latencies.sort((a, b) => a - b);
}

async function measured<T>(
  child: ChildHandle<Ready>,
  run: () => Promise<T>,
): Promise<{ value: T; wallMs: number; serverMs: number; postgresMs: number; otherMs: number; queries: number }> {
  await waitForQuiet();
  const q0 = await child.command<number>('queries', 'queries');
  const s0 = await child.command<{ cpuUser: number; cpuSystem: number }>('stats', 'stats');
  const w = await cpuWindow(child.ready.dbName);
  const value = await run();
  const cpu = await w.end();
  const s1 = await child.command<{ cpuUser: number; cpuSystem: number }>('stats', 'stats');
  const q1 = await child.command<number>('queries', 'queries');
  const serverMs = (s1.cpuUser + s1.cpuSystem - s0.cpuUser - s0.cpuSystem) / 1000;
  return { value, wallMs: cpu.wallMs, serverMs, postgresMs: cpu.postgresMs, otherMs: cpu.otherMs - serverMs, queries: q1 - q0 };
}

function phaseOf(target: string, phase: string, n: number, m: Awaited<ReturnType<typeof measured>>, lat?: number[]): Phase {
  const p: Phase = {
    target,
    phase,
    imports: n,
    seconds: round(m.wallMs / 1000),
    importsPerS: Math.round(n / (m.wallMs / 1000)),
    p50: lat ? round(percentile(lat, 50)) : Number.NaN,
    p99: lat ? round(percentile(lat, 99)) : Number.NaN,
    queriesPerImport: round(m.queries / n, 3),
    serverUsPerImport: Math.round((m.serverMs * 1000) / n),
    postgresUsPerImport: Math.round((m.postgresMs * 1000) / n),
    otherCores: round(m.otherMs / m.wallMs),
  };
  say(
    `  ${target} ${phase}: ${p.importsPerS}/s${lat ? `, p50 ${p.p50} ms, p99 ${p.p99} ms` : ''}, ${p.queriesPerImport} queries/import, ` +
      `server ${p.serverUsPerImport} µs, postgres ${p.postgresUsPerImport} µs per import, other load ${p.otherCores} cores`,
  );
  return p;
}

async function single(child: ChildHandle<Ready>, target: string): Promise<Phase[]> {
  const r = child.ready;
  const tag = randomBytes(3).toString('hex');
  const made: number[] = Array.from({ length: CALLERS }, () => 0);
  const fresh = (caller: number, n: number) => {
    made[caller] = Math.max(made[caller]!, n + 1);
    return `imp-${tag}-${caller}-${n}`;
  };
  await callers(r, WARMUP, (c, n) => `warm-${tag}-${c}-${n}`, 201);
  const created = await measured(child, () => callers(r, DURATION, fresh, 201));
  const out = [phaseOf(target, 'single: new', created.value.length, created, created.value)];
  // Re-import the connections just created (the credentials change: an `override`).
  const again = (caller: number, n: number) => `imp-${tag}-${caller}-${n % made[caller]!}`;
  const updated = await measured(child, () => callers(r, DURATION, again, 200));
  out.push(phaseOf(target, 'single: re-import', updated.value.length, updated, updated.value));
  return out;
}

async function bulk(child: ChildHandle<Ready>, target: string, webhooks: boolean): Promise<Phase[]> {
  const r = child.ready;
  const tag = randomBytes(3).toString('hex');
  const send = async () => {
    const results = { created: 0, updated: 0, failed: 0 };
    for (let from = 0; from < BULK; from += CHUNK) {
      const lines: string[] = [];
      for (let i = from; i < Math.min(BULK, from + CHUNK); i++) lines.push(JSON.stringify(importBody(`bulk-${tag}-${i}`, i)));
      const res = await fetch(`${r.origin}/connections/import?webhooks=${webhooks}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${r.key}`, 'content-type': 'application/x-ndjson' },
        body: `${lines.join('\n')}\n`,
      });
      const body = (await res.json()) as { created: number; updated: number; failed: number };
      if (res.status !== 200) throw new Error(`bulk import: ${res.status} ${JSON.stringify(body).slice(0, 500)}`);
      results.created += body.created;
      results.updated += body.updated;
      results.failed += body.failed;
    }
    return results;
  };
  const first = await measured(child, send);
  if (first.value.created !== BULK) throw new Error(`bulk: ${JSON.stringify(first.value)}`);
  const out = [phaseOf(target, `bulk NDJSON ×${CHUNK}: new${webhooks ? ', webhooks' : ''}`, BULK, first)];
  const second = await measured(child, send);
  if (second.value.updated !== BULK) throw new Error(`bulk re-import: ${JSON.stringify(second.value)}`);
  out.push(phaseOf(target, `bulk NDJSON ×${CHUNK}: re-import${webhooks ? ', webhooks' : ''}`, BULK, second));
  return out;
}

async function main() {
  const targets = arg('targets', 'before,after').split(',');
  let current: ChildHandle<Ready> | undefined;
  guard(async () => current?.stop(), numArg('max-seconds', 900));
  const phases: Phase[] = [];
  const counts: Record<string, unknown> = {};
  for (const target of targets) {
    say(`■ ${target}`);
    current = await startChild<Ready>(path.join('bench', 'import.ts'), target, { BENCH_DB_PREFIX: 'terapi_bench_import' });
    try {
      phases.push(...(await single(current, target)));
      if (target === 'after' && BULK > 0) phases.push(...(await bulk(current, target, arg('bulk-webhooks', 'false') === 'true')));
      counts[target] = await current.command('counts', 'counts');
    } finally {
      await current.stop();
      current = undefined;
    }
  }
  const base = phases.find((p) => p.target === 'before' && p.phase === 'single: new')?.importsPerS;
  const table = markdownTable(
    [
      'target',
      'phase',
      'imports/s',
      'p50 ms',
      'p99 ms',
      'ratio to before (new)',
      'queries/import',
      'server µs/import',
      'postgres µs/import',
      'other cores',
    ],
    phases.map((p) => [
      p.target,
      p.phase,
      p.importsPerS,
      Number.isNaN(p.p50) ? '—' : p.p50,
      Number.isNaN(p.p99) ? '—' : p.p99,
      base ? round(p.importsPerS / base, 2) : '—',
      p.queriesPerImport,
      p.serverUsPerImport,
      p.postgresUsPerImport,
      p.otherCores,
    ]),
  );
  process.stdout.write(`\n${table}\n`);
  const out = path.join(resultsDir, arg('out', 'import.json'));
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        command: `npx tsx bench/import.ts ${process.argv.slice(2).join(' ')}`.trim(),
        date: new Date().toISOString(),
        machine: machine(),
        postgres: await postgresSettings(),
        code: { ...codeVersion(), base: arg('base', 'main') },
        options: { callers: CALLERS, duration: DURATION, warmup: WARMUP, bulk: BULK, chunk: CHUNK, targets },
        phases,
        counts,
      },
      null,
      2,
    )}\n`,
  );
  say(`wrote ${path.relative(process.cwd(), out)}`);
  process.exit(0);
}

const serve = argv.get('serve');
if (serve) void serveChild(() => serveTarget(serve));
else
  main().catch((err: unknown) => {
    say(`import bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.kill(process.pid, 'SIGTERM');
  });
