/**
 * Actions benchmark: a no-op action through `POST /action/trigger` (synchronous: the API queues
 * the run on BullMQ and waits until the worker signals that the run is finished) at 20 concurrent
 * callers: p50, p99 and actions/s, with baselines measured in the same run.
 *
 *   npx tsx bench/actions.ts                          # bare-http, bare-bullmq, postgres
 *   npx tsx bench/actions.ts --targets=bare-bullmq,postgres,pglite --connections=20 --duration=10 --warmup=3 --rounds=2
 *   npx tsx bench/actions.ts --targets=bare-bullmq,postgres-before,postgres --before=/tmp/terapi-main
 *
 * `--before=<dir>`: the target `postgres-before` is the `postgres` server of another checkout (its
 * own `bench/actions.ts` and `src/`, e.g. `git archive main | tar -x -C <dir>` with a
 * `node_modules` link), so the code before and after a change is measured in one run.
 *
 * Each target is a child process (`--serve=<target>`, this file); autocannon runs here.
 * - `postgres` (and `pglite`): the real app as `terapi serve` runs it: createServices shared by
 *   buildApp and startWorkers in one process, the real config defaults (action concurrency 32,
 *   wait 60 s, log level warn), real Redis (BENCH_REDIS_URL, default redis://127.0.0.1:6379) with
 *   a unique queue prefix `terapi-bench-<random>` (its keys deleted on exit), on its own Postgres
 *   database (dropped on exit). The action `bench-noop` (registered with `extraFunctions` for
 *   provider github; input `{}`, output `{ ok: true }`) is enabled through the API, and one
 *   OAUTH2 connection exists. Every request: auth, connection lookup (cached), input validation,
 *   run row insert (one statement that also checks the action is enabled), BullMQ add, wait for
 *   the worker's signal; the worker: run row claim, connection (cached), context (integration
 *   read), exec, output validation, run row finish.
 * - `bare-bullmq`: the floor of that round trip: a bare Fastify POST route that adds a job to a
 *   BullMQ queue (same Redis, same job options as Terapi's actions queue) and waits for it with
 *   QueueEvents, while a no-op BullMQ worker (concurrency 32) in the same process completes it.
 * - `bare-http`: a bare Fastify POST route answering the same body at once (the HTTP floor).
 *
 * Before measuring, one request must answer 200 `{ success: true, output: { ok: true } }`; a
 * run with any non-2xx, error or timeout is rejected. Latency percentiles from every response's
 * time (float ms, autocannon `response` events). CPU of the server child, Postgres, redis-server
 * and autocannon is accounted (as bench/run.ts); each measurement waits for a quiet machine.
 * Results: bench/results/actions.json.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import autocannon, { type Result } from 'autocannon';
import { Queue, QueueEvents, Worker } from 'bullmq';
import { sql } from 'drizzle-orm';
import Fastify from 'fastify';
import { queryRows } from '../src/db/client.js';
import { queueDefinitions } from '../src/queue/queues.js';
import { createRedis } from '../src/queue/redis.js';
import {
  NOOP_ACTION,
  PROVIDER_CONFIG_KEY,
  arg,
  argv,
  codeVersion,
  cpuWindow,
  deleteRedisPrefix,
  guard,
  listen,
  machine,
  markdownTable,
  numArg,
  percentile,
  postgresSettings,
  procCpuMs,
  redisUrl,
  resultsDir,
  round,
  say,
  serveChild,
  startBenchApp,
  startChild,
  waitForQuiet,
  type ChildHandle,
} from './workloads.js';

const CONNECTIONS = numArg('connections', 20);
const DURATION = numArg('duration', 10);
const WARMUP = numArg('warmup', 3);
const ROUNDS = numArg('rounds', 1);

interface Ready {
  origin: string;
  key: string;
  connectionId: string;
  dbName?: string;
  queuePrefix?: string;
}

const okBody = { success: true, action_name: NOOP_ACTION, output: { ok: true }, error: null };

// ---------------------------------------------------------------------------------------------
// Server children

async function serveTerapi(kind: 'postgres' | 'pglite') {
  const b = await startBenchApp({ db: kind, workers: true });
  try {
    await b.call('POST', `/integration/${PROVIDER_CONFIG_KEY}/functions`, { name: NOOP_ACTION });
    const origin = await listen(b);
    return {
      ready: { origin, key: b.key, connectionId: b.connectionId, dbName: b.db.dbName, queuePrefix: b.config.queues.prefix } satisfies Ready,
      close: () => b.close(),
      commands: {
        runs: async () =>
          Object.fromEntries(
            (
              await queryRows<{ status: string; n: number }>(
                b.db.database.db,
                sql`SELECT status, count(*)::int AS n FROM runs WHERE type = 'action' GROUP BY status`,
              )
            ).map((r) => [r.status, r.n]),
          ),
      },
    };
  } catch (err) {
    await b.close();
    throw err;
  }
}

async function serveBareHttp() {
  const app = Fastify({ logger: false });
  app.post('/action/trigger', async () => okBody);
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address();
  if (!a || typeof a === 'string') throw new Error('no address');
  return { ready: { origin: `http://127.0.0.1:${a.port}`, key: 'bare', connectionId: 'bare' } satisfies Ready, close: () => app.close() };
}

async function serveBareBullmq() {
  const prefix = `terapi-bench-${randomBytes(4).toString('hex')}`;
  const target = { url: redisUrl };
  const queue = new Queue('actions', {
    connection: createRedis(target, { maxRetriesPerRequest: 3 }),
    prefix,
    defaultJobOptions: queueDefinitions.actions.options,
  });
  const events = new QueueEvents('actions', { connection: createRedis(target, { maxRetriesPerRequest: null }), prefix });
  await events.waitUntilReady();
  const worker = new Worker('actions', async () => ({ ok: true }), {
    connection: createRedis(target, { maxRetriesPerRequest: null }),
    prefix,
    concurrency: 32,
  });
  const app = Fastify({ logger: false });
  app.post('/action/trigger', async () => {
    const job = await queue.add('actions', { runId: randomBytes(16).toString('hex') });
    await job.waitUntilFinished(events, 60_000);
    return okBody;
  });
  await app.listen({ host: '127.0.0.1', port: 0 });
  const a = app.server.address();
  if (!a || typeof a === 'string') throw new Error('no address');
  return {
    ready: { origin: `http://127.0.0.1:${a.port}`, key: 'bare', connectionId: 'bare', queuePrefix: prefix } satisfies Ready,
    async close() {
      await app.close();
      await worker.close();
      await events.close();
      await queue.close();
      say(`deleted ${await deleteRedisPrefix(prefix)} redis keys of ${prefix}`);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Load

/** Pids of the redis-server that serves BENCH_REDIS_URL (by its port), for CPU accounting. */
function redisPids(): number[] {
  const port = new URL(redisUrl).port || '6379';
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/comm`, 'utf8').trim() !== 'redis-server') continue;
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(`:${port}`)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

const requestOf = (r: Ready) => ({
  method: 'POST',
  path: '/action/trigger',
  headers: { authorization: `Bearer ${r.key}`, 'content-type': 'application/json' },
  body: JSON.stringify({ connection_id: r.connectionId, provider_config_key: PROVIDER_CONFIG_KEY, action_name: NOOP_ACTION, input: {} }),
});

async function sanity(r: Ready): Promise<void> {
  const q = requestOf(r);
  const res = await fetch(`${r.origin}${q.path}`, { method: 'POST', headers: q.headers, body: q.body });
  const body = (await res.json()) as typeof okBody;
  if (res.status !== 200 || body.success !== true || body.output?.ok !== true)
    throw new Error(`sanity: ${res.status} ${JSON.stringify(body)}`);
}

interface Measurement {
  target: string;
  round: number;
  requests: number;
  durationS: number;
  actionsPerS: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number; mean: number };
  errors: number;
  timeouts: number;
  non2xx: number;
  cpu: {
    serverCores: number;
    postgresCores: number;
    redisCores: number;
    loadgenCores: number;
    otherCores: number;
    serverUsPerAction: number;
    postgresUsPerAction: number;
    redisUsPerAction: number;
  };
  runs?: Record<string, number>;
}

function load(r: Ready, seconds: number, record: boolean): Promise<{ latencies: number[]; result: Result }> {
  const latencies: number[] = [];
  return new Promise((resolve, reject) => {
    const inst = autocannon(
      {
        ...requestOf(r),
        url: `${r.origin}/action/trigger`,
        connections: CONNECTIONS,
        pipelining: 1,
        duration: seconds,
        timeout: 30,
      },
      (err, result) => (err ? reject(err) : resolve({ latencies, result })),
    );
    if (record)
      inst.on('response', (_c: unknown, status: number, _b: number, ms: number) => status >= 200 && status < 300 && latencies.push(ms));
  });
}

async function measure(child: ChildHandle<Ready>, target: string, round_: number): Promise<Measurement> {
  const r = child.ready;
  await load(r, WARMUP, false);
  await waitForQuiet();
  const redis = redisPids();
  const redisBefore = redis.map((p) => procCpuMs(p) ?? 0);
  const s0 = await child.command<{ cpuUser: number; cpuSystem: number }>('stats', 'stats');
  const w = await cpuWindow(r.dbName);
  const { latencies, result } = await load(r, DURATION, true);
  const cpu = await w.end();
  const s1 = await child.command<{ cpuUser: number; cpuSystem: number }>('stats', 'stats');
  const redisMs = redis.reduce((s, p, i) => s + ((procCpuMs(p) ?? redisBefore[i]!) - redisBefore[i]!), 0);
  const serverMs = (s1.cpuUser + s1.cpuSystem - s0.cpuUser - s0.cpuSystem) / 1000;
  latencies.sort((a, b) => a - b);
  const n = latencies.length;
  const seconds = cpu.wallMs / 1000;
  const m: Measurement = {
    target,
    round: round_,
    requests: n,
    durationS: round(seconds, 2),
    actionsPerS: Math.round(n / seconds),
    latencyMs: {
      p50: round(percentile(latencies, 50)),
      p90: round(percentile(latencies, 90)),
      p99: round(percentile(latencies, 99)),
      max: round(latencies[n - 1] ?? Number.NaN),
      mean: round(latencies.reduce((a, b) => a + b, 0) / n),
    },
    errors: result.errors,
    timeouts: result.timeouts,
    non2xx: result.non2xx,
    cpu: {
      serverCores: round(serverMs / cpu.wallMs),
      postgresCores: round(cpu.postgresMs / cpu.wallMs),
      redisCores: round(redisMs / cpu.wallMs),
      loadgenCores: round(cpu.processMs / cpu.wallMs),
      otherCores: round((cpu.otherMs - serverMs - redisMs) / cpu.wallMs),
      serverUsPerAction: Math.round((serverMs * 1000) / n),
      postgresUsPerAction: Math.round((cpu.postgresMs * 1000) / n),
      redisUsPerAction: Math.round((redisMs * 1000) / n),
    },
  };
  if (target === 'postgres' || target === 'postgres-before' || target === 'pglite')
    m.runs = await child.command<Record<string, number>>('runs', 'runs');
  if (m.errors || m.timeouts || m.non2xx)
    throw new Error(
      `${target}: ${m.errors} errors, ${m.timeouts} timeouts, ${m.non2xx} non-2xx: ${JSON.stringify(result.statusCodeStats)}`,
    );
  say(
    `  ${target} round ${round_}: ${m.actionsPerS} actions/s, p50 ${m.latencyMs.p50} ms, p99 ${m.latencyMs.p99} ms ` +
      `(server ${m.cpu.serverCores} cores, postgres ${m.cpu.postgresCores}, redis ${m.cpu.redisCores}, autocannon ${m.cpu.loadgenCores}, other ${m.cpu.otherCores})`,
  );
  return m;
}

async function main() {
  const targets = arg('targets', 'bare-http,bare-bullmq,postgres').split(',');
  if (targets.includes('postgres-before') && !arg('before', '')) throw new Error('postgres-before needs --before=<checkout dir>');
  let current: ChildHandle<Ready> | undefined;
  guard(async () => current?.stop(), numArg('max-seconds', 900));
  const runs: Measurement[] = [];
  for (let round_ = 1; round_ <= ROUNDS; round_++) {
    for (const target of targets) {
      say(`■ ${target} (round ${round_})`);
      current =
        target === 'postgres-before'
          ? await startChild<Ready>(path.join(arg('before', ''), 'bench', 'actions.ts'), 'postgres')
          : await startChild<Ready>(path.join('bench', 'actions.ts'), target);
      try {
        await sanity(current.ready);
        runs.push(await measure(current, target, round_));
      } finally {
        await current.stop();
        current = undefined;
      }
    }
  }
  const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const summary = targets.map((t) => {
    const mine = runs.filter((r) => r.target === t);
    return {
      target: t,
      actionsPerS: med(mine.map((r) => r.actionsPerS)),
      p50: med(mine.map((r) => r.latencyMs.p50)),
      p99: med(mine.map((r) => r.latencyMs.p99)),
      serverUsPerAction: med(mine.map((r) => r.cpu.serverUsPerAction)),
      postgresUsPerAction: med(mine.map((r) => r.cpu.postgresUsPerAction)),
      redisUsPerAction: med(mine.map((r) => r.cpu.redisUsPerAction)),
      otherCores: med(mine.map((r) => r.cpu.otherCores)),
    };
  });
  const floor = summary.find((s) => s.target === 'bare-bullmq')?.actionsPerS;
  const http = summary.find((s) => s.target === 'bare-http')?.actionsPerS;
  const table = markdownTable(
    [
      'target',
      'actions/s',
      'p50 ms',
      'p99 ms',
      'ratio to bare-bullmq',
      'ratio to bare-http',
      'server µs/action',
      'postgres µs/action',
      'redis µs/action',
      'other cores',
    ],
    summary.map((s) => [
      s.target,
      s.actionsPerS,
      s.p50,
      s.p99,
      floor && s.target !== 'bare-bullmq' ? round(s.actionsPerS / floor, 3) : '—',
      http && s.target !== 'bare-http' ? round(s.actionsPerS / http, 3) : '—',
      s.serverUsPerAction,
      s.postgresUsPerAction,
      s.redisUsPerAction,
      s.otherCores,
    ]),
  );
  process.stdout.write(`\n${table}\n`);
  const out = path.join(resultsDir, arg('out', 'actions.json'));
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        command: `npx tsx bench/actions.ts ${process.argv.slice(2).join(' ')}`.trim(),
        date: new Date().toISOString(),
        machine: machine(),
        postgres: await postgresSettings(),
        code: codeVersion(),
        options: { connections: CONNECTIONS, duration: DURATION, warmup: WARMUP, rounds: ROUNDS, targets, redis: redisUrl },
        summary,
        runs,
      },
      null,
      2,
    )}\n`,
  );
  say(`wrote ${path.relative(process.cwd(), out)}`);
  process.exit(0);
}

const serve = argv.get('serve');
if (serve) {
  void serveChild(() =>
    serve === 'bare-http' ? serveBareHttp() : serve === 'bare-bullmq' ? serveBareBullmq() : serveTerapi(serve as 'postgres' | 'pglite'),
  );
} else {
  main().catch((err: unknown) => {
    say(`actions bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
    process.kill(process.pid, 'SIGTERM');
  });
}
