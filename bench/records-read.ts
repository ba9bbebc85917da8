/**
 * Records read benchmark: paging N records (default 100,000, ~1 KB each) through `GET /records`
 * (limit 1,000) over real HTTP, one client following `next_cursor` (issue target: ≥ 50,000
 * records/s on Postgres), against a bare Fastify route that serves pages of the same size from
 * memory, measured in the same run. Also on PGlite (in memory).
 *
 *   npx tsx bench/records-read.ts                       # bare, postgres, pglite; 3 measured passes each
 *   npx tsx bench/records-read.ts --targets=postgres --passes=5 --limit=1000 --records=100000
 *
 * Each target is a child process (`--serve=<target>`, this file), so the client never shares the
 * server's event loop:
 * - `postgres` / `pglite`: the real app (createServices + buildApp, real config defaults, log level
 *   warn, no workers: `terapi api`), on its own database `terapi_bench_<random>` (dropped on
 *   exit) or in-memory PGlite, listening on 127.0.0.1. Seeded with N records of the bench model
 *   (`BenchIssue`, the sync registered by bench/workloads.ts) for one connection through the
 *   records store (prepareRecords + upsertRecords, 1,000 per transaction), then ANALYZE.
 * - `bare`: `Fastify({ logger: false })` with a `GET /records` that answers pre-rendered pages (Buffers) of
 *   the same records, the same metadata and the same `next_cursor` scheme (the HTTP + transfer floor).
 *
 * The client (this process, Node's fetch = undici, keep-alive) reads each page as text and takes
 * `next_cursor` from its end (no JSON.parse on the measured passes; one verification pass parses
 * every page and checks N distinct ids, in order, with `_nango_metadata`). A pass = all N records;
 * one warm-up pass, then --passes measured passes (median reported). CPU of the server child,
 * Postgres and this client is accounted as in bench/run.ts; each pass waits for a quiet machine.
 * Results: bench/results/records-read.json.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import Fastify from 'fastify';
import { GithubIssue } from '../src/functions/library/github.js';
import { upsertRecords } from '../src/records/repository.js';
import {
  BENCH_MODEL,
  PROVIDER_CONFIG_KEY,
  arg,
  argv,
  benchIssue,
  codeVersion,
  cpuWindow,
  guard,
  listen,
  machine,
  markdownTable,
  numArg,
  percentile,
  postgresSettings,
  prepareRecords,
  resultsDir,
  round,
  say,
  serveChild,
  startBenchApp,
  startChild,
  waitForQuiet,
  type ChildHandle,
} from './workloads.js';

const N = numArg('records', 100_000);
const LIMIT = numArg('limit', 1000);
const PASSES = numArg('passes', 3);
const TARGET = 50_000;

interface Ready {
  origin: string;
  key: string;
  connectionId: string;
  dbName?: string;
  records: number;
  seedMs?: number;
}

// ---------------------------------------------------------------------------------------------
// Server child

async function serveApp(kind: 'postgres' | 'pglite') {
  const b = await startBenchApp({ db: kind, workers: false });
  try {
    const t0 = performance.now();
    const db = b.db.database.db;
    for (let from = 0; from < N; from += 1000) {
      const batch = prepareRecords(
        Array.from({ length: Math.min(1000, N - from) }, (_, k) => GithubIssue.parse(benchIssue(from + k)) as Record<string, unknown>),
      );
      await db.transaction((tx) => upsertRecords(tx, b.connectionPk, BENCH_MODEL, batch));
    }
    await db.execute(sql`ANALYZE`);
    const seedMs = Math.round(performance.now() - t0);
    say(`[${kind}] seeded ${N} records in ${seedMs} ms`);
    const origin = await listen(b);
    return {
      ready: { origin, key: b.key, connectionId: b.connectionId, dbName: b.db.dbName, records: N, seedMs } satisfies Ready,
      close: () => b.close(),
    };
  } catch (err) {
    await b.close();
    throw err;
  }
}

/** Pre-rendered pages shaped exactly like the real route's (records' JSON + `_nango_metadata`, base64url cursors). */
async function serveBare() {
  const app = Fastify({ logger: false });
  const pages: Buffer[] = [];
  const ts = new Date().toISOString();
  const cursorOf = (n: number) => Buffer.from(JSON.stringify([n, 'AbCdEfGhIj'])).toString('base64url');
  for (let from = 0; from < N; from += LIMIT) {
    const recs = prepareRecords(
      Array.from({ length: Math.min(LIMIT, N - from) }, (_, k) => GithubIssue.parse(benchIssue(from + k)) as Record<string, unknown>),
    );
    const parts = recs.map((r, k) => {
      const meta = `"_nango_metadata":{"first_seen_at":"${ts}","last_modified_at":"${ts}","last_action":"ADDED","deleted_at":null,"cursor":"${cursorOf(from + k + 1)}"}`;
      return `${r.json.slice(0, -1)},${meta}}`;
    });
    const next = from + LIMIT < N ? `"${cursorOf(from + LIMIT)}"` : 'null';
    pages.push(Buffer.from(`{"records":[${parts.join(',')}],"next_cursor":${next}}`));
  }
  app.get<{ Querystring: { cursor?: string } }>('/records', async (req, reply) => {
    const after = req.query.cursor ? (JSON.parse(Buffer.from(req.query.cursor, 'base64url').toString()) as [number])[0] : 0;
    return reply.type('application/json; charset=utf-8').send(pages[Math.floor(after / LIMIT)]);
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const address = app.server.address();
  if (!address || typeof address === 'string') throw new Error('no address');
  return {
    ready: { origin: `http://127.0.0.1:${address.port}`, key: 'bare', connectionId: 'bare', records: N } satisfies Ready,
    close: () => app.close(),
  };
}

// ---------------------------------------------------------------------------------------------
// Client

interface Pass {
  records: number;
  pages: number;
  ms: number;
  recordsPerS: number;
  pageMs: { p50: number; p99: number; max: number };
  bytesPerPage: number;
  cpu?: {
    serverCores: number;
    postgresCores: number;
    clientCores: number;
    otherCores: number;
    serverUsPerRecord: number;
    postgresUsPerRecord: number;
  };
}

async function page(r: Ready, cursor: string | undefined): Promise<string> {
  const q = new URLSearchParams({ model: BENCH_MODEL, limit: String(LIMIT) });
  if (cursor) q.set('cursor', cursor);
  const res = await fetch(`${r.origin}/records?${q.toString()}`, {
    headers: { authorization: `Bearer ${r.key}`, 'connection-id': r.connectionId, 'provider-config-key': PROVIDER_CONFIG_KEY },
  });
  const text = await res.text();
  if (res.status !== 200) throw new Error(`GET /records → ${res.status} ${text.slice(0, 300)}`);
  return text;
}

function nextCursor(body: string): string | undefined {
  const at = body.lastIndexOf('"next_cursor":');
  const v = body.slice(at + 14, -1);
  return v === 'null' ? undefined : v.slice(1, -1);
}

/** One full pass, parsing everything: N distinct ids, in the seeded order, each with its metadata. */
async function verify(r: Ready): Promise<void> {
  let cursor: string | undefined;
  let n = 0;
  const ids = new Set<string>();
  do {
    const body = JSON.parse(await page(r, cursor)) as {
      records: { id: string; _nango_metadata: { cursor: string; last_action: string } }[];
      next_cursor: string | null;
    };
    for (const rec of body.records) {
      if (rec.id !== String(1_000_000_000 + n)) throw new Error(`record ${n}: id ${rec.id}`);
      if (!rec._nango_metadata?.cursor || rec._nango_metadata.last_action !== 'ADDED')
        throw new Error(`record ${n}: metadata ${JSON.stringify(rec._nango_metadata)}`);
      ids.add(rec.id);
      n++;
    }
    cursor = body.next_cursor ?? undefined;
  } while (cursor);
  if (n !== N || ids.size !== N) throw new Error(`verification: ${n} records, ${ids.size} distinct, expected ${N}`);
}

async function pass(child: ChildHandle<Ready>, measure: boolean): Promise<Pass> {
  const r = child.ready;
  if (measure) await waitForQuiet();
  const serverBefore = measure ? await child.command<{ cpuUser: number; cpuSystem: number }>('stats', 'stats') : undefined;
  const w = measure ? await cpuWindow(r.dbName) : undefined;
  const lat: number[] = [];
  let bytes = 0;
  let cursor: string | undefined;
  let pages = 0;
  const t0 = performance.now();
  do {
    const t = performance.now();
    const body = await page(r, cursor);
    lat.push(performance.now() - t);
    bytes += body.length;
    pages++;
    cursor = nextCursor(body);
  } while (cursor);
  const ms = performance.now() - t0;
  const cpu = await w?.end();
  const serverAfter = measure ? await child.command<{ cpuUser: number; cpuSystem: number }>('stats', 'stats') : undefined;
  lat.sort((a, b) => a - b);
  const p: Pass = {
    records: N,
    pages,
    ms: round(ms, 1),
    recordsPerS: Math.round((N / ms) * 1000),
    pageMs: { p50: round(percentile(lat, 50)), p99: round(percentile(lat, 99)), max: round(lat.at(-1)!) },
    bytesPerPage: Math.round(bytes / pages),
  };
  if (cpu && serverBefore && serverAfter) {
    const serverMs = (serverAfter.cpuUser + serverAfter.cpuSystem - serverBefore.cpuUser - serverBefore.cpuSystem) / 1000;
    const clientMs = cpu.processMs;
    p.cpu = {
      serverCores: round(serverMs / cpu.wallMs),
      postgresCores: round(cpu.postgresMs / cpu.wallMs),
      clientCores: round(clientMs / cpu.wallMs),
      otherCores: round((cpu.otherMs - serverMs) / cpu.wallMs),
      serverUsPerRecord: round((serverMs * 1000) / N, 1),
      postgresUsPerRecord: round((cpu.postgresMs * 1000) / N, 1),
    };
  }
  return p;
}

async function main() {
  const targets = arg('targets', 'bare,postgres,pglite').split(',');
  let current: ChildHandle<Ready> | undefined;
  guard(async () => current?.stop(), numArg('max-seconds', 900));
  const results: Record<string, { ready: Ready; passes: Pass[]; median: Pass }> = {};
  for (const target of targets) {
    say(`■ ${target}: starting (seeding ${N} records)`);
    current = await startChild<Ready>(path.join('bench', 'records-read.ts'), target);
    const child = current;
    try {
      await verify(child.ready);
      say(`  verified: ${N} records, in order, each once`);
      await pass(child, false);
      const passes: Pass[] = [];
      for (let i = 0; i < PASSES; i++) {
        const p = await pass(child, true);
        say(
          `  pass ${i + 1}: ${p.recordsPerS} records/s (${p.pages} pages, p50 ${p.pageMs.p50} ms, p99 ${p.pageMs.p99} ms; server ${p.cpu?.serverCores} cores, postgres ${p.cpu?.postgresCores}, client ${p.cpu?.clientCores}, other ${p.cpu?.otherCores})`,
        );
        passes.push(p);
      }
      const median = [...passes].sort((a, b) => a.recordsPerS - b.recordsPerS)[Math.floor(passes.length / 2)]!;
      results[target] = { ready: child.ready, passes, median };
    } finally {
      await child.stop();
      current = undefined;
    }
  }
  const bare = results.bare?.median.recordsPerS;
  const rows = Object.entries(results).map(([t, r]) => {
    const m = r.median;
    return [
      t,
      m.recordsPerS,
      `${Math.min(...r.passes.map((p) => p.recordsPerS))}–${Math.max(...r.passes.map((p) => p.recordsPerS))}`,
      bare && t !== 'bare' ? round(m.recordsPerS / bare, 3) : '—',
      m.pageMs.p50,
      m.pageMs.p99,
      round(m.bytesPerPage / 1024, 0),
      m.cpu?.serverUsPerRecord ?? '—',
      m.cpu?.postgresUsPerRecord ?? '—',
      m.cpu?.otherCores ?? '—',
    ];
  });
  const table = markdownTable(
    [
      'target',
      'records/s (median)',
      'passes (min–max)',
      'ratio to bare',
      'page p50 ms',
      'page p99 ms',
      'KiB/page',
      'server µs/record',
      'postgres µs/record',
      'other cores',
    ],
    rows,
  );
  process.stdout.write(`\n${table}\n`);
  const out = path.join(resultsDir, arg('out', 'records-read.json'));
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        command: `npx tsx bench/records-read.ts ${process.argv.slice(2).join(' ')}`.trim(),
        date: new Date().toISOString(),
        machine: machine(),
        postgres: await postgresSettings(),
        code: codeVersion(),
        options: { records: N, limit: LIMIT, passes: PASSES, targets },
        target: TARGET,
        results,
      },
      null,
      2,
    )}\n`,
  );
  say(`wrote ${path.relative(process.cwd(), out)}`);
  process.exit(0);
}

const serve = argv.get('serve');
if (serve) void serveChild(() => (serve === 'bare' ? serveBare() : serveApp(serve as 'postgres' | 'pglite')));
else
  main().catch((err: unknown) => {
    say(`records-read bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.kill(process.pid, 'SIGTERM');
  });
