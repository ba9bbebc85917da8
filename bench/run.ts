/**
 * GET /connection/{id} benchmark: the real Terapi app on Postgres and on PGlite against a bare
 * Fastify route, in one run on one machine. See bench/README.md.
 *
 *   npm run bench                                   # bare, postgres, pglite, pglite-dir, bare again; each Terapi
 *                                                   # target: the real route, then `uncached` (bench/variants.ts)
 *   npm run bench -- --duration=10 --warmup=3 --connections=50 --targets=bare,postgres
 *   npm run bench -- --profile                      # CPU-profile the postgres and pglite servers instead
 *   npm run bench -- --profile --route=raw-floor    # … serving one of the what-if routes
 *   npm run bench -- --variants                     # also measure the what-if routes of bench/variants.ts
 *   npm run bench -- --variants --only=cached,cached-fjs --targets=bare,postgres,bare --out=x.json
 *   npm run bench -- --rounds=3                     # repeat the whole sequence; the table shows medians
 *
 * Noise control (this machine is shared): each measurement waits until the rest of the machine is
 * quiet (--quiet-wait=120 s at most) and is repeated (--attempts=3) when other processes used more
 * than --max-other-load=0.25 cores meanwhile; every run reports that "other load".
 *
 * Each server is a separate child process (node --import tsx bench/server.ts <mode>), started
 * just before it is measured and stopped right after, so only one server runs at a time and the
 * load generator (autocannon, in this process) never shares the server's event loop.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import autocannon, { type Result } from 'autocannon';
import pg from 'pg';
import { formatSummary, summarizeProfile, type ProfileSummary } from './profile-summary.js';
import type { ReadyLine, ServerMode } from './server.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const resultsDir = path.join(root, 'bench', 'results');

// ---------------------------------------------------------------------------------------------
// Options

const argv = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'] as const;
  }),
);
const num = (name: string, dflt: number) => {
  const v = Number(argv.get(name) ?? dflt);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} must be a positive number`);
  return v;
};
const profileMode = argv.get('profile') === 'true';
const variantsMode = argv.get('variants') === 'true';
/** --only=a,b: with --variants, just these what-if routes (after the real one). */
const only = argv.get('only')?.split(',');
const opts = {
  duration: num('duration', 10),
  warmup: num('warmup', 3),
  connections: num('connections', 50),
  seedConnections: num('seed', 1000),
  rounds: num('rounds', 1),
  pgUrl: process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres',
  targets: (
    argv.get('targets') ??
    (profileMode ? 'postgres,pglite' : variantsMode ? 'bare,postgres,pglite,bare' : 'bare,postgres,pglite,pglite-dir,bare')
  ).split(',') as ServerMode[],
};

// ---------------------------------------------------------------------------------------------
// Child servers

const live = new Set<ServerChild>();

interface ServerStats {
  queries: number;
  cpuUser: number;
  cpuSystem: number;
}

class ServerChild {
  private waiting: { key: string; resolve: (v: unknown) => void }[] = [];

  private constructor(
    readonly mode: ServerMode,
    readonly proc: ChildProcess,
    readonly ready: ReadyLine,
    readonly exited: Promise<number | null>,
    lines: ReturnType<typeof createInterface>,
  ) {
    lines.on('line', (l) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(l) as Record<string, unknown>;
      } catch {
        return;
      }
      const i = this.waiting.findIndex((w) => w.key in msg);
      if (i >= 0) this.waiting.splice(i, 1)[0]!.resolve(msg);
    });
  }

  /** Sends a stdin command (see bench/server.ts) and waits for the reply line carrying `key`. */
  command<T>(cmd: string, key: string): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${this.mode}: no reply to ${cmd}`)), 10_000);
      this.waiting.push({
        key,
        resolve: (v) => {
          clearTimeout(timer);
          resolve((v as Record<string, T>)[key] ?? (v as T));
        },
      });
      this.proc.stdin!.write(`${cmd}\n`);
    });
  }

  stats(): Promise<ServerStats> {
    return this.command<ServerStats>('stats', 'stats');
  }

  static async start(mode: ServerMode, env: Record<string, string> = {}): Promise<ServerChild> {
    const proc = spawn(process.execPath, ['--import', 'tsx', path.join('bench', 'server.ts'), mode], {
      cwd: root,
      env: { ...process.env, BENCH_CONNECTIONS: String(opts.seedConnections), BENCH_PG_URL: opts.pgUrl, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
    createInterface({ input: proc.stderr }).on('line', (l) => process.stderr.write(`  ${l}\n`));
    const lines = createInterface({ input: proc.stdout });
    let timer: NodeJS.Timeout | undefined;
    const ready = await Promise.race([
      new Promise<ReadyLine>((resolve, reject) => {
        lines.on('line', (l) => {
          try {
            const parsed = JSON.parse(l) as ReadyLine;
            if (typeof parsed.port === 'number') resolve(parsed);
          } catch {
            process.stderr.write(`  [${mode} stdout] ${l}\n`);
          }
        });
        lines.once('close', () => reject(new Error(`${mode} server closed stdout before it was ready`)));
      }),
      exited.then((code) => Promise.reject(new Error(`${mode} server exited with ${code} before it was ready`))),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${mode} server not ready after 180 s`)), 180_000);
      }),
    ])
      .catch((err: unknown) => {
        proc.kill('SIGKILL');
        throw err;
      })
      .finally(() => clearTimeout(timer));
    const child = new ServerChild(mode, proc, ready, exited, lines);
    live.add(child);
    return child;
  }

  async stop(): Promise<void> {
    live.delete(this);
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGTERM');
    const code = await Promise.race([this.exited, sleep(30_000).then(() => 'timeout' as const)]);
    if (code === 'timeout') {
      process.stderr.write(`  ${this.mode} server did not stop in 30 s; killing\n`);
      this.proc.kill('SIGKILL');
      await this.exited;
    }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Measurement helpers

const clkTck = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

/** CPU time (user + system, ms) of a process (all its threads), from /proc. */
function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clkTck; // utime, stime
  } catch {
    return undefined;
  }
}

/**
 * CPU time per process of local `postgres` processes: the given backends (those of the bench
 * database) plus the server's auxiliary processes (WAL writer, checkpointer, …), when Postgres runs here.
 */
function postgresCpu(backends: Set<number>): Map<number, number> {
  const out = new Map<number, number>();
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== 'postgres') continue;
      // Other clients' backends (e.g. a test suite on the same server) are not ours to count.
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

/** Busy CPU time (ms) of the whole machine, from the aggregate line of /proc/stat. */
function machineBusyMs(): number {
  try {
    const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
    const [user, nice, system, , , irq, softirq, steal] = ticks.map(Number);
    return ((user! + nice! + system! + irq! + softirq! + steal!) * 1000) / clkTck;
  } catch {
    return Number.NaN;
  }
}

/**
 * This machine is shared (other sessions run test suites): before a measurement, wait until the
 * rest of the machine has been quiet (< 0.25 cores busy) for 2 s, at most `--quiet-wait` seconds
 * (default 120; 0 disables). Whatever load remains is reported as "other load" per measurement.
 */
async function waitForQuiet(): Promise<void> {
  const maxS = Number(argv.get('quiet-wait') ?? 120);
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
      if (!said) process.stderr.write(`  waiting for the machine to be quiet (${cores.toFixed(2)} cores busy elsewhere)…\n`);
      said = true;
    }
  }
  process.stderr.write(`  machine still busy after ${maxS} s; measuring anyway (see "other load")\n`);
}

interface CpuSnapshot {
  server: ServerStats;
  postgres: Map<number, number>;
  loadgen: NodeJS.CpuUsage;
  machine: number;
}
async function cpuSnapshot(child: ServerChild, pgBackends: Set<number>): Promise<CpuSnapshot> {
  return { server: await child.stats(), postgres: postgresCpu(pgBackends), loadgen: process.cpuUsage(), machine: machineBusyMs() };
}

function cpuDelta(a: CpuSnapshot, b: CpuSnapshot) {
  let pgMs = 0;
  for (const [pid, ms] of b.postgres) pgMs += ms - (a.postgres.get(pid) ?? 0);
  const lg = process.cpuUsage(a.loadgen);
  const loadgenMs = (lg.user + lg.system) / 1000;
  const serverUserMs = (b.server.cpuUser - a.server.cpuUser) / 1000;
  const serverSystemMs = (b.server.cpuSystem - a.server.cpuSystem) / 1000;
  const serverMs = serverUserMs + serverSystemMs;
  // Whatever else ran on the machine meanwhile (other users' tests, …): machine busy time minus ours.
  const otherMs = b.machine - a.machine - serverMs - pgMs - loadgenMs;
  return { serverMs, serverSystemMs, postgresMs: pgMs, loadgenMs, otherMs, queries: b.server.queries - a.server.queries };
}

/** Pids of the backends connected to the bench database (the server's pool and LISTEN connection). */
async function benchBackends(dbName: string): Promise<number[]> {
  const c = new pg.Client({ connectionString: opts.pgUrl });
  await c.connect();
  try {
    const a = await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [dbName]);
    return a.rows.map((x) => x.pid);
  } finally {
    await c.end();
  }
}

const isTerapi = (r: ReadyLine) => r.mode !== 'bare';
const authHeaders = (r: ReadyLine): Record<string, string> => (isTerapi(r) ? { authorization: `Bearer ${r.key}` } : {});
const pathFor = (r: ReadyLine, id: string, base = '/connection') =>
  `${base}/${encodeURIComponent(id)}?provider_config_key=${encodeURIComponent(r.providerConfigKey)}`;

/** A benchmark of 401s is worthless: check the target answers what we expect before measuring. */
async function sanityCheck(r: ReadyLine, base: string): Promise<{ bodyBytes: number; body: unknown }> {
  const origin = `http://127.0.0.1:${r.port}`;
  const get = async (p: string, headers: Record<string, string>) => {
    const res = await fetch(origin + p, { headers });
    const text = await res.text();
    return { status: res.status, text };
  };
  const fail = (msg: string): never => {
    throw new Error(`sanity check failed for ${r.mode} ${base}: ${msg}`);
  };
  const ids = [r.connectionId, `${r.idPrefix}${r.connections - 1}`];
  let first: { status: number; text: string } | undefined;
  for (const id of ids) {
    const res = await get(pathFor(r, id, base), authHeaders(r));
    if (res.status !== 200) fail(`GET ${pathFor(r, id, base)} → ${res.status} ${res.text.slice(0, 200)}`);
    const body = JSON.parse(res.text) as Record<string, unknown> & {
      credentials?: Record<string, unknown>;
      metadata?: Record<string, unknown>;
    };
    const ok =
      body.id === id &&
      body.provider_config_key === r.providerConfigKey &&
      body.provider === 'github' &&
      body.credentials?.type === 'oauth2' &&
      typeof body.credentials?.expires_at === 'string' &&
      typeof body.created_at === 'string' &&
      body.metadata?.team === 'bench';
    if (!ok) fail(`unexpected body ${res.text}`);
    first ??= res;
  }
  if (isTerapi(r)) {
    const noAuth = await get(pathFor(r, r.connectionId, base), {});
    if (noAuth.status !== 401) fail(`without a key → ${noAuth.status}, expected 401`);
    const badKey = await get(pathFor(r, r.connectionId, base), { authorization: 'Bearer terapi_sk_not-a-real-key-000000000000' });
    if (badKey.status !== 401) fail(`with a wrong key → ${badKey.status}, expected 401`);
    const missing = await get(pathFor(r, `${r.idPrefix}does-not-exist`, base), authHeaders(r));
    if (missing.status !== 404) fail(`unknown connection → ${missing.status}, expected 404`);
  }
  return { bodyBytes: Buffer.byteLength(first!.text), body: JSON.parse(first!.text) };
}

interface LoadRun {
  result: Result;
  /** Latencies (ms, float) of every 2xx response. */
  latencies: Float64Array;
  statuses: Record<string, number>;
}

/** autocannon against the target: each of the N sockets asks for a different seeded connection id. */
function runLoad(r: ReadyLine, seconds: number, record: boolean, base: string): Promise<LoadRun> {
  let lat = new Float64Array(record ? 1 << 20 : 0);
  let n = 0;
  let clientIndex = 0;
  const headers = authHeaders(r);
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${r.port}`,
        connections: opts.connections,
        pipelining: 1,
        duration: seconds,
        timeout: 10,
        setupClient: (client) => {
          // Spread the sockets over the seeded ids (stride coprime with 1000 → distinct ids).
          const id = `${r.idPrefix}${(clientIndex++ * 137) % r.connections}`;
          (client as unknown as { setRequests(reqs: object[]): void }).setRequests([
            { method: 'GET', path: pathFor(r, id, base), headers },
          ]);
        },
      },
      (err, result) => {
        if (err) return reject(err);
        resolve({
          result,
          latencies: lat.subarray(0, n),
          statuses: Object.fromEntries(Object.entries(result.statusCodeStats).map(([k, v]) => [k, v.count])),
        });
      },
    );
    if (record) {
      instance.on('response', (_client: unknown, statusCode: number, _bytes: number, responseTime: number) => {
        if (statusCode < 200 || statusCode >= 300) return;
        if (n === lat.length) {
          const bigger = new Float64Array(lat.length * 2);
          bigger.set(lat);
          lat = bigger;
        }
        lat[n++] = responseTime;
      });
    }
  });
}

function percentile(sorted: Float64Array, p: number): number {
  if (!sorted.length) return Number.NaN;
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;

interface Measurement {
  label: string;
  mode: ServerMode;
  route: string;
  requests: number;
  durationS: number;
  rps: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  autocannonLatencyMs: { p50: number; p99: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  statuses: Record<string, number>;
  bodyBytes: number;
  cpu: {
    serverMs: number;
    /** Share of the server's CPU time spent in the kernel (sockets). */
    serverSystemPct: number;
    postgresMs: number;
    loadgenMs: number;
    serverCores: number;
    postgresCores: number;
    loadgenCores: number;
    serverUsPerReq: number;
    postgresUsPerReq: number;
    loadgenUsPerReq: number;
    /** CPU used meanwhile by everything else on the machine (a noisy neighbour makes the run unreliable). */
    otherCores: number;
  };
  queriesPerRequest?: number;
  logLevel: string;
  poolSize?: number;
  ratio?: { rps: number; p50: number; p99: number };
  attempt?: number;
  key?: string;
  round?: number;
}

/**
 * Sanity check, warm-up and a measured run against `base` on a running server. A run during which
 * the rest of the machine used more than --max-other-load cores (default 0.25) is repeated, up to
 * --attempts times (default 3); the quietest attempt is kept.
 */
async function measure(child: ServerChild, label: string, base = '/connection', profile = false): Promise<Measurement> {
  const r = child.ready;
  process.stderr.write(`\n▶ ${label} (${base}/{id})\n`);
  const { bodyBytes, body } = await sanityCheck(r, base);
  process.stderr.write(`  sanity ok (200, ${bodyBytes} B): ${JSON.stringify(body)}\n`);
  const maxOther = Number(argv.get('max-other-load') ?? 0.25);
  const attempts = profile ? 1 : Number(argv.get('attempts') ?? 3);
  let best: Measurement | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const m = await measureOnce(child, label, base, profile, bodyBytes);
    m.attempt = attempt;
    if (!best || m.cpu.otherCores < best.cpu.otherCores) best = m;
    if (m.cpu.otherCores <= maxOther) break;
    if (attempt < attempts) process.stderr.write(`  other load ${m.cpu.otherCores} cores > ${maxOther}: measuring again\n`);
  }
  return best!;
}

async function measureOnce(child: ServerChild, label: string, base: string, profile: boolean, bodyBytes: number): Promise<Measurement> {
  const r = child.ready;
  const mode = r.mode;
  await waitForQuiet();
  process.stderr.write(`  warm-up ${opts.warmup} s…\n`);
  const warm = await runLoad(r, opts.warmup, false, base);
  if (warm.result.non2xx || warm.result.errors)
    throw new Error(`${label}: warm-up got ${JSON.stringify(warm.statuses)}, ${warm.result.errors} errors`);
  if (profile) await child.command('profile-start', 'profiling');
  const onPostgres = mode === 'postgres' && r.dbName;
  const backends = new Set(onPostgres ? await benchBackends(r.dbName!) : []);
  const cpuBefore = await cpuSnapshot(child, backends);
  process.stderr.write(`  measuring ${opts.duration} s at ${opts.connections} connections…\n`);
  const run = await runLoad(r, opts.duration, true, base);
  if (onPostgres) for (const pid of await benchBackends(r.dbName!)) backends.add(pid);
  const cpuAfter = await cpuSnapshot(child, backends);
  const res = run.result;
  const sorted = Float64Array.from(run.latencies).sort();
  const total = res.requests.total;
  const durationS = res.duration;
  const cpu = cpuDelta(cpuBefore, cpuAfter);
  const m: Measurement = {
    label,
    mode,
    route: `${base}/{id}`,
    requests: total,
    durationS,
    rps: round(total / durationS, 0),
    latencyMs: {
      p50: round(percentile(sorted, 50)),
      p90: round(percentile(sorted, 90)),
      p99: round(percentile(sorted, 99)),
      max: round(sorted[sorted.length - 1] ?? Number.NaN),
      mean: round(sorted.reduce((a, b) => a + b, 0) / (sorted.length || 1)),
    },
    autocannonLatencyMs: { p50: res.latency.p50, p99: res.latency.p99 },
    errors: res.errors,
    timeouts: res.timeouts,
    non2xx: res.non2xx,
    statuses: run.statuses,
    bodyBytes,
    cpu: {
      serverMs: round(cpu.serverMs, 0),
      serverSystemPct: round((cpu.serverSystemMs / cpu.serverMs) * 100, 1),
      postgresMs: round(mode === 'postgres' ? cpu.postgresMs : 0, 0),
      loadgenMs: round(cpu.loadgenMs, 0),
      serverCores: round(cpu.serverMs / 1000 / durationS),
      postgresCores: round(mode === 'postgres' ? cpu.postgresMs / 1000 / durationS : 0),
      loadgenCores: round(cpu.loadgenMs / 1000 / durationS),
      serverUsPerReq: round((cpu.serverMs * 1000) / total, 1),
      postgresUsPerReq: round(mode === 'postgres' ? (cpu.postgresMs * 1000) / total : 0, 1),
      loadgenUsPerReq: round((cpu.loadgenMs * 1000) / total, 1),
      otherCores: round(Math.max(0, cpu.otherMs) / 1000 / durationS),
    },
    queriesPerRequest: isTerapi(r) ? round(cpu.queries / total, 3) : undefined,
    logLevel: r.logLevel,
    poolSize: r.poolSize,
  };
  if (m.non2xx || m.errors || m.timeouts) {
    throw new Error(
      `${label}: ${m.non2xx} non-2xx (${JSON.stringify(m.statuses)}), ${m.errors} errors, ${m.timeouts} timeouts — not a valid measurement`,
    );
  }
  process.stderr.write(
    `  ${m.rps} req/s, p50 ${m.latencyMs.p50} ms, p99 ${m.latencyMs.p99} ms; CPU server ${m.cpu.serverCores} cores` +
      ` (${m.cpu.serverSystemPct}% kernel)` +
      (mode === 'postgres' ? `, postgres ${m.cpu.postgresCores} cores` : '') +
      (m.queriesPerRequest !== undefined ? `, ${m.queriesPerRequest} queries/request` : '') +
      `, load generator ${m.cpu.loadgenCores} cores, everything else ${m.cpu.otherCores} cores\n`,
  );
  return m;
}

// ---------------------------------------------------------------------------------------------
// Report

interface Summary {
  target: string;
  mode: ServerMode;
  route: string;
  runs: number;
  rps: number;
  rpsRange: [number, number];
  p50: number;
  p99: number;
  serverUsPerReq: number;
  postgresUsPerReq?: number;
  queriesPerRequest?: number;
  maxOtherLoadCores: number;
  ratio?: { rps: number; p50: number; p99: number };
}

function markdownTable(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  return [
    line(head),
    `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...body.map(line),
  ].join('\n');
}

const dash = (x: number | undefined, digits: number) => (x === undefined ? '—' : x.toFixed(digits));

function summaryTable(rows: Summary[]): string {
  const multi = rows.some((r) => r.runs > 1);
  const head = [
    'target',
    'req/s',
    ...(multi ? ['runs (min–max req/s)'] : []),
    'p50 ms',
    'p99 ms',
    'ratio',
    'server CPU µs/req',
    'postgres CPU µs/req',
    'queries/req',
    'other load (cores, max)',
  ];
  return markdownTable(
    head,
    rows.map((r) => [
      r.target,
      String(r.rps),
      ...(multi ? [`${r.runs} (${r.rpsRange[0]}–${r.rpsRange[1]})`] : []),
      r.p50.toFixed(2),
      r.p99.toFixed(2),
      r.ratio ? r.ratio.rps.toFixed(3) : '—',
      r.serverUsPerReq.toFixed(0),
      dash(r.postgresUsPerReq, 0),
      dash(r.queriesPerRequest, 2),
      r.maxOtherLoadCores.toFixed(2),
    ]),
  );
}

function runsTable(rows: Measurement[]): string {
  const head = [
    'run',
    'req/s',
    'p50 ms',
    'p99 ms',
    'ratio',
    'server CPU µs/req',
    'postgres CPU µs/req',
    'queries/req',
    'other load (cores)',
  ];
  return markdownTable(
    head,
    rows.map((m) => [
      m.label,
      String(m.rps),
      m.latencyMs.p50.toFixed(2),
      m.latencyMs.p99.toFixed(2),
      m.ratio ? m.ratio.rps.toFixed(3) : '—',
      m.cpu.serverUsPerReq.toFixed(0),
      m.mode === 'postgres' ? m.cpu.postgresUsPerReq.toFixed(0) : '—',
      dash(m.queriesPerRequest, 2),
      m.cpu.otherCores.toFixed(2),
    ]),
  );
}

function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    cpuModel: cpus[0]?.model,
    memGiB: round(os.totalmem() / 2 ** 30, 1),
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

/** Which code was measured: the commit, and whether src/ had uncommitted changes. */
function codeVersion() {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, { cwd: root, encoding: 'utf8' }).trim();
    } catch {
      return undefined;
    }
  };
  const dirty = git('status', '--porcelain', '--', 'src', 'migrations');
  return { commit: git('rev-parse', 'HEAD'), srcDirtyFiles: dirty === undefined ? undefined : dirty.split('\n').filter(Boolean).length };
}

async function postgresVersion(): Promise<string | undefined> {
  const c = new pg.Client({ connectionString: opts.pgUrl });
  try {
    await c.connect();
    return (await c.query<{ v: string }>('SHOW server_version')).rows[0]?.v;
  } catch {
    return undefined;
  } finally {
    await c.end().catch(() => undefined);
  }
}

async function withServer<T>(mode: ServerMode, env: Record<string, string>, fn: (child: ServerChild) => Promise<T>): Promise<T> {
  process.stderr.write(`\n■ starting the ${mode} server\n`);
  const child = await ServerChild.start(mode, env);
  try {
    return await fn(child);
  } finally {
    await child.stop();
  }
}

async function main() {
  mkdirSync(resultsDir, { recursive: true });
  const startedAt = new Date().toISOString();
  const codeAtStart = codeVersion(); // others may commit while this runs: record both ends
  process.stderr.write(
    `GET /connection/{id}: ${opts.connections} connections, pipelining 1, ${opts.warmup} s warm-up + ${opts.duration} s per target, ` +
      `${opts.seedConnections} seeded connections; targets ${opts.targets.join(', ')}` +
      `${profileMode ? ' (CPU profiling)' : variantsMode ? ' (with what-if variants)' : ''}; load average ${os
        .loadavg()
        .map((x) => x.toFixed(2))
        .join(' ')}\n`,
  );

  if (profileMode) {
    // --route=<variant> profiles one of the what-if routes of bench/variants.ts instead of the real one.
    const variant = argv.get('route');
    const summaries: Record<string, { measurement: Measurement; profile: ProfileSummary }> = {};
    for (const mode of opts.targets) {
      const name = variant ? `${mode}-${variant}` : mode;
      const file = path.join(resultsDir, `${name}.cpuprofile`);
      const env: Record<string, string> = { BENCH_CPU_PROFILE: file, ...(variant ? { BENCH_VARIANTS: '1' } : {}) };
      const m = await withServer(mode, env, (child) => {
        const base = variant ? child.ready.variants?.[variant] : '/connection';
        if (!base) throw new Error(`no variant route "${variant}"; see bench/variants.ts`);
        return measure(child, `terapi on ${mode}${variant ? `: ${variant}` : ''} (under profiler)`, base, true);
      });
      const s = summarizeProfile(file); // written by the child on SIGTERM
      const text = formatSummary(s);
      writeFileSync(path.join(resultsDir, `profile-${name}.txt`), `${text}\n`);
      process.stdout.write(`\n== ${name}: ${m.rps} req/s under the profiler (server CPU ${m.cpu.serverUsPerReq} µs/req) ==\n${text}\n`);
      summaries[name] = { measurement: m, profile: s };
    }
    const summaryFile = path.join(resultsDir, `profile-summary${variant ? `-${variant}` : ''}.json`);
    writeFileSync(
      summaryFile,
      `${JSON.stringify({ startedAt, machine: machine(), code: { atStart: codeAtStart, atEnd: codeVersion() }, options: opts, summaries }, null, 2)}\n`,
    );
    return;
  }

  const rows: Measurement[] = [];
  for (let roundNo = 1; roundNo <= opts.rounds; roundNo++) {
    const seen = new Map<ServerMode, number>();
    for (const mode of opts.targets) {
      const nth = (seen.get(mode) ?? 0) + 1;
      seen.set(mode, nth);
      const suffix = `${opts.rounds > 1 ? `, round ${roundNo}` : ''}${nth > 1 ? `, run ${nth}` : ''}`;
      const tag = (m: Measurement, key: string) =>
        Object.assign(m, { key, round: roundNo, label: `${key}${suffix ? ` (${suffix.slice(2)})` : ''}` });
      if (mode === 'bare') {
        rows.push(tag(await withServer(mode, {}, (c) => measure(c, `bare fastify${suffix}`)), 'bare fastify'));
        continue;
      }
      // The real route, then the extra routes of bench/variants.ts on the same server: by default only
      // `uncached` (the one-query-per-request path behind the connection cache), with --variants all.
      await withServer(mode, { BENCH_VARIANTS: '1' }, async (c) => {
        rows.push(tag(await measure(c, `terapi on ${mode}${suffix}`), `terapi on ${mode}`));
        for (const [name, base] of Object.entries(c.ready.variants ?? {})) {
          if (!variantsMode && name !== 'uncached') continue;
          if (only && !only.includes(name)) continue;
          rows.push(tag(await measure(c, `terapi on ${mode}, ${name}${suffix}`, base), `terapi on ${mode}, ${name}`));
        }
      });
    }
  }

  // One summary row per target: medians over its runs (bare runs twice per round: first and last).
  const median = (xs: number[]) => {
    const a = [...xs].sort((x, y) => x - y);
    return a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
  };
  const keys = [...new Set(rows.map((m) => m.key!))];
  const summary: Summary[] = keys.map((key) => {
    const runs = rows.filter((m) => m.key === key);
    const pick = (f: (m: Measurement) => number | undefined) => {
      const xs = runs.map(f).filter((x): x is number => x !== undefined);
      return xs.length ? round(median(xs), 2) : undefined;
    };
    return {
      target: key,
      mode: runs[0]!.mode,
      route: runs[0]!.route,
      runs: runs.length,
      rps: round(median(runs.map((m) => m.rps)), 0),
      rpsRange: [Math.min(...runs.map((m) => m.rps)), Math.max(...runs.map((m) => m.rps))] as [number, number],
      p50: pick((m) => m.latencyMs.p50)!,
      p99: pick((m) => m.latencyMs.p99)!,
      serverUsPerReq: pick((m) => m.cpu.serverUsPerReq)!,
      postgresUsPerReq: runs[0]!.mode === 'postgres' ? pick((m) => m.cpu.postgresUsPerReq) : undefined,
      queriesPerRequest: pick((m) => m.queriesPerRequest),
      maxOtherLoadCores: Math.max(...runs.map((m) => m.cpu.otherCores)),
    };
  });
  const base = summary.find((x) => x.mode === 'bare');
  for (const x of summary) {
    if (!base || x.mode === 'bare') continue;
    // Throughput ratio (the target); latency ratios are bare ÷ terapi (1 = as fast as bare, lower = slower).
    x.ratio = { rps: round(x.rps / base.rps, 3), p50: round(base.p50 / x.p50, 3), p99: round(base.p99 / x.p99, 3) };
  }
  for (const m of rows) {
    if (base && m.mode !== 'bare')
      m.ratio = { rps: round(m.rps / base.rps, 3), p50: round(base.p50 / m.latencyMs.p50, 3), p99: round(base.p99 / m.latencyMs.p99, 3) };
  }

  const out = {
    benchmark: `GET /connection/{id}?provider_config_key=… vs a bare Fastify route${variantsMode ? ', with what-if variants (bench/variants.ts)' : ''}`,
    startedAt,
    finishedAt: new Date().toISOString(),
    machine: { ...machine(), postgres: await postgresVersion() },
    code: { atStart: codeAtStart, atEnd: codeVersion() },
    options: { ...opts, pipelining: 1, host: '127.0.0.1' },
    target: { ratio: 0.3, baseline: 'median req/s of all bare-Fastify runs of this invocation' },
    summary,
    runs: rows,
  };
  const outFile = path.join(resultsDir, argv.get('out') ?? (variantsMode ? 'connection-get-variants.json' : 'connection-get.json'));
  writeFileSync(outFile, `${JSON.stringify(out, null, 2)}\n`);

  if (rows.length > summary.length) process.stdout.write(`\nAll runs:\n${runsTable(rows)}\n`);
  process.stdout.write(`\n${summaryTable(summary)}\n\n`);
  if (base) {
    process.stdout.write(
      `ratio = req/s ÷ bare Fastify req/s (median of ${base.runs} run(s) in this invocation: ${base.rps}); target ≥ 0.3\n`,
    );
    for (const x of summary.filter((y) => y.ratio)) {
      process.stdout.write(`  ${x.target}: ${x.ratio!.rps.toFixed(3)} ${x.ratio!.rps >= 0.3 ? '✓ meets' : '✗ below'} the 0.3 target\n`);
    }
  }
  process.stdout.write(`results written to ${path.relative(process.cwd(), outFile)}\n`);
}

const stopAll = () => Promise.allSettled([...live].map((c) => c.stop()));
process.once('SIGINT', () => {
  void stopAll().then(() => process.exit(130));
});

try {
  await main();
} catch (err) {
  process.stderr.write(`bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exitCode = 1;
} finally {
  await stopAll();
}
