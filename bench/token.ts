/**
 * GET /auth/token/{provider_config_key}/{connection_id} for connections with valid tokens, at 50
 * concurrent connections, against a bare Fastify route measured in the same run (issue target:
 * ratio ≥ 0.5). Reuses the server children of bench/server.ts (seeded OAUTH2 connections whose
 * tokens are valid for an hour, so no refresh happens during the run).
 *
 *   npx tsx bench/token.ts                      # 3 rounds of bare, postgres, pglite, then bare once more
 *   npx tsx bench/token.ts --rounds=5 --duration=10 --warmup=3 --connections=50 --targets=postgres,pglite
 *   npx tsx bench/token.ts --baseline=connection  # the old baseline: bare GET /connection/:id (271 B body)
 *   npx tsx bench/token.ts --profile            # CPU-profile the postgres and pglite servers (one run each)
 *   npx tsx bench/token.ts --log-level=info     # the servers log at info (Terapi's default): two lines per request
 *   npx tsx bench/token.ts --quiet-wait=120 --attempts=3 --max-other-load=0.25   # noise control (defaults)
 *
 * The baseline (bench/server.ts `bare`) is a bare `Fastify({ logger: false })` route at the same
 * URL that answers the same bytes: a 124-byte token body of the same shape and the same response
 * headers (an `x-request-id` of the same length), and it receives the same request (with the
 * Authorization header, which it ignores). So the kernel and HTTP work per response are the same,
 * and the ratio prices only what Terapi does per request.
 *
 * All servers are started once (bare, then each target) and stay up; the measurements then
 * alternate: each round measures bare, then every target, and one more bare run closes the
 * sequence, so every Terapi run sits between two bare runs. Each measurement waits until the rest
 * of the machine is quiet (see run.ts) and reports what else ran meanwhile ("other load").
 * Summary: medians over the rounds; ratio = median Terapi req/s ÷ median bare req/s, and also the
 * median of the per-round ratios (each Terapi run against the mean of the bare runs around it).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import autocannon, { type Result } from 'autocannon';
import pg from 'pg';
import { formatSummary, summarizeProfile } from './profile-summary.js';
import type { ReadyLine } from './server.js';

const argv = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'] as const;
  }),
);
const duration = Number(argv.get('duration') ?? 10);
const warmup = Number(argv.get('warmup') ?? 3);
const connections = Number(argv.get('connections') ?? 50);
const profileMode = argv.get('profile') === 'true';
const rounds = profileMode ? 1 : Number(argv.get('rounds') ?? 3);
const baselineRoute = (argv.get('baseline') ?? 'token') as 'token' | 'connection';
const targets = (argv.get('targets') ?? 'postgres,pglite').split(',') as ('postgres' | 'pglite' | 'pglite-dir')[];
/**
 * The servers' log level (bench/server.ts BENCH_LOG_LEVEL; default `warn`, so no per-request lines).
 * At `info` (Terapi's default) Fastify writes two lines per request; the servers' stderr then goes
 * to a file in the temp directory (as a deployment's log file), not to this terminal.
 */
const logLevel = argv.get('log-level') ?? 'warn';
const logFiles: string[] = [];
const pgUrl = process.env.BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const root = path.resolve(import.meta.dirname, '..');
const resultsDir = path.join(root, 'bench', 'results');
const TARGET = 0.5;

// ---------------------------------------------------------------------------------------------
// Server children (bench/server.ts)

interface Child {
  mode: string;
  proc: ChildProcess;
  ready: ReadyLine;
  command<T>(cmd: string, key: string): Promise<T>;
}

async function startServer(mode: string, env: Record<string, string> = {}): Promise<Child> {
  const verbose = logLevel !== 'warn' && logLevel !== 'error' && logLevel !== 'fatal' && logLevel !== 'silent';
  const logFile = path.join(os.tmpdir(), `terapi-bench-token-${mode}-${process.pid}.log`);
  if (verbose) {
    process.stderr.write(`${mode} server logs (${logLevel}) go to ${logFile} (deleted at the end)\n`);
    logFiles.push(logFile);
  }
  const proc = spawn(process.execPath, ['--import', 'tsx', 'bench/server.ts', mode], {
    cwd: root,
    env: { ...process.env, BENCH_PG_URL: pgUrl, BENCH_LOG_LEVEL: logLevel, ...env },
    stdio: ['pipe', 'pipe', verbose ? openSync(logFile, 'a') : 'inherit'],
  });
  const lines = createInterface({ input: proc.stdout! });
  const waiting: { key: string; resolve: (v: Record<string, unknown>) => void }[] = [];
  const ready = await new Promise<ReadyLine>((resolve, reject) => {
    lines.on('line', (l) => {
      let msg: Record<string, unknown>;
      try {
        msg = JSON.parse(l) as Record<string, unknown>;
      } catch {
        return;
      }
      if (typeof msg.port === 'number' && msg.mode) return resolve(msg as unknown as ReadyLine);
      const i = waiting.findIndex((w) => w.key in msg);
      if (i >= 0) waiting.splice(i, 1)[0]!.resolve(msg);
    });
    proc.once('exit', (code) => reject(new Error(`${mode} server exited ${code}`)));
  });
  return {
    mode,
    proc,
    ready,
    command: <T>(cmd: string, key: string) =>
      new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${mode}: no reply to ${cmd}`)), 10_000);
        waiting.push({ key, resolve: (v) => (clearTimeout(timer), resolve(v[key] as T)) });
        proc.stdin!.write(`${cmd}\n`);
      }),
  };
}

const stop = (child: Child) =>
  new Promise<void>((resolve) => {
    if (child.proc.exitCode !== null || child.proc.signalCode !== null) return resolve();
    child.proc.once('exit', () => resolve());
    child.proc.kill('SIGTERM'); // writes the CPU profile, if any, then closes the server and drops the bench database
  });

// ---------------------------------------------------------------------------------------------
// CPU accounting (as run.ts: server, Postgres backends of the bench database, load generator, rest of the machine)

const clkTck = (() => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  } catch {
    return 100;
  }
})();

function procCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / clkTck;
  } catch {
    return undefined;
  }
}

/** Local `postgres` processes: the given backends plus the server's auxiliary processes, not other clients' backends. */
function postgresCpuMs(backends: Set<number>): number {
  let total = 0;
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== 'postgres') continue;
      const cmd = readFileSync(`/proc/${e}/cmdline`, 'utf8');
      if (/postgres: [^:]*: \S+ \S+ \S+/.test(cmd) && !backends.has(Number(e))) continue;
    } catch {
      continue;
    }
    total += procCpuMs(Number(e)) ?? 0;
  }
  return total;
}

function machineBusyMs(): number {
  const [, ...ticks] = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/);
  const [user, nice, system, , , irq, softirq, steal] = ticks.map(Number);
  return ((user! + nice! + system! + irq! + softirq! + steal!) * 1000) / clkTck;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Waits (at most --quiet-wait=120 s) until the machine, our idle servers included, has been quiet for 2 s. */
async function waitForQuiet(): Promise<void> {
  const maxS = Number(argv.get('quiet-wait') ?? 120);
  const started = Date.now();
  let quiet = 0;
  let last = machineBusyMs();
  while (Date.now() - started < maxS * 1000) {
    await sleep(1000);
    const now = machineBusyMs();
    const cores = (now - last) / 1000;
    last = now;
    if (cores < 0.25) {
      if (++quiet >= 2) return;
    } else quiet = 0;
  }
  process.stderr.write(`  machine still busy after ${maxS} s; measuring anyway (see "other load")\n`);
}

async function benchBackends(dbName: string | undefined): Promise<Set<number>> {
  if (!dbName) return new Set();
  const c = new pg.Client({ connectionString: pgUrl });
  await c.connect();
  try {
    return new Set(
      (await c.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = $1', [dbName])).rows.map((x) => x.pid),
    );
  } finally {
    await c.end();
  }
}

interface Snapshot {
  server: { cpuUser: number; cpuSystem: number; queries: number };
  postgres: number;
  loadgen: NodeJS.CpuUsage;
  machine: number;
}
const snapshot = async (child: Child, backends: Set<number>): Promise<Snapshot> => ({
  server: await child.command<Snapshot['server']>('stats', 'stats'),
  postgres: postgresCpuMs(backends),
  loadgen: process.cpuUsage(),
  machine: machineBusyMs(),
});

// ---------------------------------------------------------------------------------------------
// Load

const pathFor = (child: Child, id: string) =>
  child.mode === 'bare' && baselineRoute === 'connection'
    ? `/connection/${encodeURIComponent(id)}?provider_config_key=${encodeURIComponent(child.ready.providerConfigKey)}`
    : `/auth/token/${encodeURIComponent(child.ready.providerConfigKey)}/${encodeURIComponent(id)}`;
// The same request to every target: the bare route ignores the header.
const headersFor = (child: Child) => ({ authorization: `Bearer ${child.ready.key}` });

function load(child: Child, seconds: number, record: boolean): Promise<{ result: Result; latencies: Float64Array }> {
  let index = 0;
  let lat = new Float64Array(record ? 1 << 20 : 0);
  let n = 0;
  return new Promise((resolve, reject) => {
    const instance = autocannon(
      {
        url: `http://127.0.0.1:${child.ready.port}`,
        connections,
        pipelining: 1,
        duration: seconds,
        timeout: 10,
        setupClient: (client) => {
          // Each socket asks for a different seeded connection (stride coprime with 1000).
          const id = `${child.ready.idPrefix}${(index++ * 137) % child.ready.connections}`;
          (client as unknown as { setRequests(reqs: object[]): void }).setRequests([
            { method: 'GET', path: pathFor(child, id), headers: headersFor(child) },
          ]);
        },
      },
      (err, result) => (err ? reject(err) : resolve({ result, latencies: lat.subarray(0, n) })),
    );
    if (record) {
      // autocannon's own histogram has whole-ms resolution: keep every 2xx response time as a float.
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

/** The target must answer what we expect, and Terapi must still authenticate and 404, before we measure it. */
async function sanity(child: Child): Promise<{ bytes: number; headers: string[] }> {
  const get = (p: string, headers: Record<string, string>) => fetch(`http://127.0.0.1:${child.ready.port}${p}`, { headers });
  const id = `${child.ready.idPrefix}0`;
  const res = await get(pathFor(child, id), headersFor(child));
  const text = await res.text();
  if (res.status !== 200) throw new Error(`${child.mode}: ${res.status} ${text}`);
  const body = JSON.parse(text) as { access_token?: string; type?: string; expires_at?: string; raw?: object };
  if (child.mode !== 'bare' && (body.type !== 'Bearer' || !body.access_token?.startsWith('gho_') || !body.expires_at || !body.raw)) {
    throw new Error(`${child.mode}: unexpected ${text}`);
  }
  if (child.mode !== 'bare') {
    const status = async (p: string, h: Record<string, string>) => (await get(p, h)).status;
    if ((await status(pathFor(child, id), {})) !== 401) throw new Error(`${child.mode}: no 401 without a key`);
    if ((await status(pathFor(child, id), { authorization: 'Bearer terapi_sk_not-a-real-key-000000000000' })) !== 401)
      throw new Error(`${child.mode}: no 401 with a wrong key`);
    if ((await status(pathFor(child, `${child.ready.idPrefix}missing`), headersFor(child))) !== 404)
      throw new Error(`${child.mode}: no 404 for an unknown connection`);
  }
  const headers = [...res.headers.keys()].filter((h) => h !== 'date').sort();
  return { bytes: Buffer.byteLength(text), headers };
}

const round = (x: number, digits = 2) => Math.round(x * 10 ** digits) / 10 ** digits;
const percentile = (sorted: Float64Array, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))] ?? Number.NaN;
const median = (xs: number[]) => {
  const a = [...xs].sort((x, y) => x - y);
  return a.length % 2 ? a[(a.length - 1) / 2]! : (a[a.length / 2 - 1]! + a[a.length / 2]!) / 2;
};

interface Run {
  target: string;
  round: number;
  rps: number;
  p50: number;
  p99: number;
  requests: number;
  bodyBytes: number;
  serverUsPerReq: number;
  serverKernelPct: number;
  postgresUsPerReq?: number;
  queriesPerRequest?: number;
  otherCores: number;
  ratio?: number;
}

/**
 * One measurement; repeated (up to --attempts=3) while the rest of the machine used more than
 * --max-other-load=0.25 cores meanwhile (other sessions' test suites). The quietest attempt is kept.
 */
async function measure(child: Child, roundNo: number, profile = false): Promise<Run> {
  const attempts = profile ? 1 : Number(argv.get('attempts') ?? 3);
  const maxOther = Number(argv.get('max-other-load') ?? 0.25);
  let best: Run | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const run = await measureOnce(child, roundNo, profile);
    if (!best || run.otherCores < best.otherCores) best = run;
    if (run.otherCores <= maxOther) break;
    if (attempt < attempts) process.stderr.write(`  other load ${run.otherCores} cores > ${maxOther}: measuring again\n`);
  }
  return best!;
}

async function measureOnce(child: Child, roundNo: number, profile: boolean): Promise<Run> {
  const target = child.mode === 'bare' ? 'bare fastify' : `terapi on ${child.mode}`;
  const { bytes } = await sanity(child);
  await waitForQuiet();
  await load(child, warmup, false);
  if (profile) await child.command('profile-start', 'profiling'); // after the warm-up: start-up, seeding and JIT warm-up stay out
  const backends = await benchBackends(child.ready.dbName);
  const before = await snapshot(child, backends);
  const { result, latencies } = await load(child, duration, true);
  const after = await snapshot(child, backends);
  if (result.non2xx || result.errors || result.timeouts)
    throw new Error(`${target}: ${result.non2xx} non-2xx, ${result.errors} errors, ${result.timeouts} timeouts`);
  const total = result.requests.total;
  const serverUs = after.server.cpuUser - before.server.cpuUser + (after.server.cpuSystem - before.server.cpuSystem);
  const pgMs = after.postgres - before.postgres;
  const lg = process.cpuUsage(before.loadgen);
  const otherMs = after.machine - before.machine - serverUs / 1000 - pgMs - (lg.user + lg.system) / 1000;
  const sorted = Float64Array.from(latencies).sort();
  const run: Run = {
    target,
    round: roundNo,
    rps: Math.round(total / result.duration),
    p50: round(percentile(sorted, 50)),
    p99: round(percentile(sorted, 99)),
    requests: total,
    bodyBytes: bytes,
    serverUsPerReq: round(serverUs / total, 1),
    serverKernelPct: round(((after.server.cpuSystem - before.server.cpuSystem) / serverUs) * 100, 1),
    postgresUsPerReq: child.mode === 'postgres' ? round((pgMs * 1000) / total, 1) : undefined,
    queriesPerRequest: child.mode === 'bare' ? undefined : round((after.server.queries - before.server.queries) / total, 3),
    otherCores: round(Math.max(0, otherMs) / 1000 / result.duration),
  };
  process.stderr.write(
    `${target} (round ${roundNo}): ${run.rps} req/s, p50 ${run.p50} ms, p99 ${run.p99} ms, server ${run.serverUsPerReq} µs/req (${run.serverKernelPct}% kernel)` +
      `${run.queriesPerRequest !== undefined ? `, ${run.queriesPerRequest} queries/req` : ''}, other load ${run.otherCores} cores\n`,
  );
  return run;
}

// ---------------------------------------------------------------------------------------------

const children: Child[] = [];
process.once('SIGINT', () => void Promise.allSettled(children.map(stop)).then(() => process.exit(130)));

try {
  if (profileMode) {
    for (const mode of targets) {
      const file = path.join(resultsDir, `token-${mode}.cpuprofile`);
      const child = await startServer(mode, { BENCH_CPU_PROFILE: file });
      children.push(child);
      let run: Run;
      try {
        run = await measure(child, 1, true);
      } finally {
        await stop(child);
      }
      const text = formatSummary(summarizeProfile(file));
      writeFileSync(path.join(resultsDir, `profile-token-${mode}.txt`), `${text}\n`);
      process.stdout.write(`\n== ${mode}: ${run.rps} req/s under the profiler (server ${run.serverUsPerReq} µs/req) ==\n${text}\n`);
    }
  } else {
    const bare = await startServer('bare');
    children.push(bare);
    for (const mode of targets) children.push(await startServer(mode));
    const checks = await Promise.all(children.map(sanity));
    for (const [i, c] of checks.entries())
      process.stderr.write(`${children[i]!.mode}: ${c.bytes} B body, headers ${c.headers.join(', ')}\n`);

    const runs: Run[] = [];
    for (let r = 1; r <= rounds; r++) for (const child of children) runs.push(await measure(child, r));
    runs.push(await measure(bare, rounds + 1));

    // Per-round ratio: each Terapi run against the mean of the bare runs that open and close its round.
    const bareRuns = runs.filter((x) => x.target === 'bare fastify');
    for (const x of runs) {
      if (x.target === 'bare fastify') continue;
      const around = bareRuns.filter((b) => b.round === x.round || b.round === x.round + 1);
      x.ratio = round(x.rps / (around.reduce((a, b) => a + b.rps, 0) / around.length), 3);
    }
    const bareRps = median(bareRuns.map((b) => b.rps));
    const summary = [...new Set(runs.map((x) => x.target))].map((target) => {
      const rs = runs.filter((x) => x.target === target);
      const med = (f: (x: Run) => number | undefined) => {
        const xs = rs.map(f).filter((v): v is number => v !== undefined);
        return xs.length ? round(median(xs), 2) : undefined;
      };
      return {
        target,
        runs: rs.length,
        rps: Math.round(median(rs.map((x) => x.rps))),
        rpsRange: [Math.min(...rs.map((x) => x.rps)), Math.max(...rs.map((x) => x.rps))],
        p50: med((x) => x.p50),
        p99: med((x) => x.p99),
        serverUsPerReq: med((x) => x.serverUsPerReq),
        postgresUsPerReq: med((x) => x.postgresUsPerReq),
        queriesPerRequest: med((x) => x.queriesPerRequest),
        bodyBytes: rs[0]!.bodyBytes,
        maxOtherCores: Math.max(...rs.map((x) => x.otherCores)),
        ratio: target === 'bare fastify' ? undefined : round(median(rs.map((x) => x.rps)) / bareRps, 3),
        medianRoundRatio: target === 'bare fastify' ? undefined : med((x) => x.ratio),
      };
    });
    // The same medians over the quiet runs only (other load ≤ --max-other-load): on a shared machine these are the ones to quote.
    const maxOther = Number(argv.get('max-other-load') ?? 0.25);
    const quiet = runs.filter((x) => x.otherCores <= maxOther);
    const quietBare = quiet.filter((x) => x.target === 'bare fastify');
    const quietSummary = quietBare.length
      ? [...new Set(quiet.map((x) => x.target))].map((target) => {
          const rs = quiet.filter((x) => x.target === target);
          const rps = Math.round(median(rs.map((x) => x.rps)));
          return {
            target,
            runs: rs.length,
            rps,
            p50: round(median(rs.map((x) => x.p50))),
            p99: round(median(rs.map((x) => x.p99))),
            serverUsPerReq: round(median(rs.map((x) => x.serverUsPerReq)), 1),
            ratio: target === 'bare fastify' ? undefined : round(rps / median(quietBare.map((x) => x.rps)), 3),
          };
        })
      : [];
    console.table(runs);
    console.table(summary.map(({ rpsRange, ...s }) => ({ ...s, rpsRange: rpsRange.join('–') })));
    for (const s of summary.filter((x) => x.ratio !== undefined)) {
      process.stdout.write(
        `${s.target}: ratio ${s.ratio} (median of per-round ratios ${s.medianRoundRatio}) ${s.ratio! >= TARGET ? '✓ meets' : '✗ below'} the ${TARGET} target\n`,
      );
    }
    if (quietSummary.length) {
      process.stdout.write(`\nQuiet runs only (other load ≤ ${maxOther} cores):\n`);
      console.table(quietSummary);
    }
    const code = (() => {
      try {
        return execFileSync('git', ['rev-parse', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim();
      } catch {
        return undefined;
      }
    })();
    writeFileSync(
      path.resolve(resultsDir, argv.get('out') ?? 'auth-token.json'),
      `${JSON.stringify(
        {
          benchmark: `GET /auth/token/{key}/{id} vs a bare Fastify route (${baselineRoute === 'token' ? 'same URL, same body size and headers' : 'GET /connection/:id, 271 B body'})`,
          at: new Date().toISOString(),
          machine: { cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model, node: process.version, loadavg: os.loadavg() },
          commit: code,
          options: { rounds, duration, warmup, connections, targets, baseline: baselineRoute, logLevel, pipelining: 1 },
          target: TARGET,
          summary,
          quietSummary,
          runs,
        },
        null,
        2,
      )}\n`,
    );
  }
} finally {
  await Promise.allSettled(children.map(stop));
  for (const f of logFiles) rmSync(f, { force: true });
}
