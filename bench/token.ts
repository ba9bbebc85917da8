/**
 * GET /auth/token/{provider_config_key}/{connection_id} for connections with valid tokens, at 50
 * concurrent connections, against a bare Fastify route measured in the same run (issue target:
 * ratio ≥ 0.5). Reuses the server children of bench/server.ts (seeded OAUTH2 connections whose
 * tokens are valid for an hour, so no refresh happens during the run).
 *
 *   npx tsx bench/token.ts [--duration=10] [--warmup=3] [--connections=50] [--targets=bare,postgres,pglite,bare]
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import autocannon, { type Result } from 'autocannon';

const argv = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const duration = Number(argv.get('duration') ?? 10);
const warmup = Number(argv.get('warmup') ?? 3);
const connections = Number(argv.get('connections') ?? 50);
const targets = (argv.get('targets') ?? 'bare,postgres,pglite,bare').split(',') as ('bare' | 'postgres' | 'pglite')[];
const root = path.resolve(import.meta.dirname, '..');

interface Ready {
  port: number;
  key: string;
  providerConfigKey: string;
  idPrefix: string;
  connections: number;
}

async function startServer(mode: string): Promise<{ child: ChildProcess; ready: Ready }> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/server.ts', mode], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    rl.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`${mode} server exited ${code}`)));
  });
  return { child, ready: JSON.parse(line) as Ready };
}

const stop = (child: ChildProcess) =>
  new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.stdin!.end();
  });

const pathFor = (mode: string, r: Ready, id: string) =>
  mode === 'bare'
    ? `/connection/${id}?provider_config_key=${r.providerConfigKey}`
    : `/auth/token/${encodeURIComponent(r.providerConfigKey)}/${encodeURIComponent(id)}`;

function load(mode: string, r: Ready, seconds: number): Promise<Result> {
  let index = 0;
  const headers = mode === 'bare' ? {} : { authorization: `Bearer ${r.key}` };
  return new Promise((resolve, reject) => {
    autocannon(
      {
        url: `http://127.0.0.1:${r.port}`,
        connections,
        pipelining: 1,
        duration: seconds,
        setupClient: (client) => {
          // Each socket asks for a different seeded connection.
          const id = `${r.idPrefix}${(index++ * 137) % r.connections}`;
          (client as unknown as { setRequests(reqs: object[]): void }).setRequests([{ method: 'GET', path: pathFor(mode, r, id), headers }]);
        },
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
}

async function sanity(mode: string, r: Ready) {
  const res = await fetch(`http://127.0.0.1:${r.port}${pathFor(mode, r, `${r.idPrefix}0`)}`, {
    headers: mode === 'bare' ? {} : { authorization: `Bearer ${r.key}` },
  });
  const body = (await res.json()) as { access_token?: string; type?: string; id?: string };
  if (res.status !== 200) throw new Error(`${mode}: ${res.status} ${JSON.stringify(body)}`);
  if (mode !== 'bare' && (body.type !== 'Bearer' || !body.access_token?.startsWith('gho_'))) throw new Error(`${mode}: unexpected ${JSON.stringify(body)}`);
}

const rows: { target: string; rps: number; p50: number; p99: number; requests: number; non2xx: number }[] = [];
for (const mode of targets) {
  const { child, ready } = await startServer(mode);
  try {
    await sanity(mode, ready);
    await load(mode, ready, warmup);
    const result = await load(mode, ready, duration);
    if (result.non2xx || result.errors) throw new Error(`${mode}: ${result.non2xx} non-2xx, ${result.errors} errors`);
    const row = { target: mode === 'bare' ? 'bare fastify' : `terapi on ${mode}`, rps: Math.round(result.requests.average), p50: result.latency.p50, p99: result.latency.p99, requests: result.requests.total, non2xx: result.non2xx };
    rows.push(row);
    process.stderr.write(`${row.target}: ${row.rps} req/s, p50 ${row.p50} ms, p99 ${row.p99} ms\n`);
  } finally {
    await stop(child);
  }
}

const bare = rows.filter((r) => r.target === 'bare fastify');
const baseline = bare.reduce((a, r) => a + r.rps, 0) / bare.length;
const table = rows.map((r) => ({ ...r, ratio: r.target === 'bare fastify' ? undefined : Math.round((r.rps / baseline) * 100) / 100 }));
console.table(table);
writeFileSync(
  path.join(root, 'bench/results/auth-token.json'),
  `${JSON.stringify({ benchmark: 'GET /auth/token/{key}/{id} vs a bare Fastify route', at: new Date().toISOString(), cpus: os.cpus().length, node: process.version, duration, connections, baselineRps: Math.round(baseline), rows: table }, null, 2)}\n`,
);
