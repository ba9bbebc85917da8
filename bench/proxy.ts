/**
 * The proxy against the same requests sent straight to the provider, in one run:
 *  1. a small JSON GET at 50 connections: requests/s ratio proxied ÷ direct (target ≥ 0.5);
 *  2. the same, sequential on one socket: the p50 latency Terapi adds (target ≤ 1 ms);
 *  3. a 100 MB download: throughput ratio proxied ÷ direct (target ≥ 0.8) and Terapi's peak RSS
 *     growth meanwhile (target < 32 MB).
 *
 *   npx tsx bench/proxy.ts [--duration=5] [--rounds=2]
 *
 * The fake provider runs in a child process (so its work does not share Terapi's thread); Terapi
 * runs in this process on an in-memory PGlite database and REDIS_URL (default the local Redis,
 * keys under a `terapi-bench-proxy-*` prefix). The load generator (autocannon) runs here too, in
 * both the direct and the proxied runs, so it costs both the same.
 */
import { spawn } from 'node:child_process';
import { Agent, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import autocannon from 'autocannon';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { openDatabase } from '../src/db/client.js';
import { createKeyCache } from '../src/environments/key-cache.js';
import { findEnvironmentByKeyHash } from '../src/environments/repository.js';
import { createEnvironmentService } from '../src/environments/service.js';
import { createLogger } from '../src/lib/logger.js';
import { createVault } from '../src/lib/vault.js';
import { loadCatalog } from '../src/providers/catalog.js';

const argv = new Map(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=') as [string, string]));
const duration = Number(argv.get('duration') ?? 5);
const rounds = Number(argv.get('rounds') ?? 2);
const DOWNLOAD = 100 * 1024 * 1024;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const providerSource = `
import { createServer } from 'node:http';
const small = JSON.stringify({ id: 1, login: 'octocat', name: 'The Octocat', public_repos: 8, followers: 1000, created_at: '2011-01-25T18:44:36Z' });
const chunk = Buffer.alloc(64 * 1024, 7);
const server = createServer((req, res) => {
  const m = /^\\/bytes\\/(\\d+)$/.exec(req.url);
  if (m) {
    let left = Number(m[1]);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left) });
    const pump = () => { while (left > 0) { const part = left >= chunk.length ? chunk : chunk.subarray(0, left); left -= part.length; if (!res.write(part)) return void res.once('drain', pump); } res.end(); };
    return pump();
  }
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(small.length) }).end(small);
});
server.keepAliveTimeout = 60000;
server.listen(0, '127.0.0.1', () => process.stdout.write(JSON.stringify({ port: server.address().port }) + '\\n'));
`;

async function startProvider(): Promise<{ url: string; stop(): void }> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', providerSource], { stdio: ['ignore', 'pipe', 'inherit'] });
  const line = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString())));
  const { port } = JSON.parse(line) as { port: number };
  return { url: `http://127.0.0.1:${port}`, stop: () => child.kill('SIGTERM') };
}

async function startTerapi(providerUrl: string) {
  const base = loadConfig({});
  const config = {
    ...base,
    allowProviderUrlOverrides: true,
    egress: { ...base.egress, allowPrivateNetworks: true },
    queues: { ...base.queues, prefix: `terapi-bench-proxy-${randomBytes(3).toString('hex')}` },
  };
  // BENCH_DATABASE_URL: measure on PostgreSQL (a fresh, empty database) instead of in-memory PGlite.
  const database = await openDatabase({ databaseUrl: process.env.BENCH_DATABASE_URL });
  await database.migrate();
  const vault = createVault([{ id: 'bench', key: randomBytes(32) }]);
  const logger = createLogger({ level: 'warn' });
  const app = await buildApp({
    config,
    database,
    vault,
    catalog: loadCatalog(),
    logger,
    redis: { url: process.env.REDIS_URL ?? 'redis://127.0.0.1:6379' },
  });
  const environments = createEnvironmentService({
    db: database.db,
    keyCache: createKeyCache({ ttlMs: 0, load: (h) => findEnvironmentByKeyHash(database.db, h) }),
  });
  const account = await environments.createAccount('bench');
  const { secretKey } = await environments.createEnvironment(account.id, 'dev');
  const auth = { authorization: `Bearer ${secretKey}` };
  for (const [url, payload] of [
    ['/integration', { provider_config_key: 'github', provider: 'github', api_base_url: providerUrl }],
    ['/connection', { provider_config_key: 'github', connection_id: 'u', credentials: { type: 'OAUTH2', access_token: 'tok' } }],
  ] as const) {
    const r = await app.inject({ method: 'POST', url, headers: auth, payload });
    if (r.statusCode !== 200) throw new Error(`${url}: ${r.statusCode} ${r.body}`);
  }
  await app.listen({ host: '127.0.0.1', port: 0 });
  const { port } = app.server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/proxy`,
    headers: { ...auth, 'connection-id': 'u', 'provider-config-key': 'github' },
    async stop() {
      await app.close();
      await database.close();
    },
  };
}

function load(url: string, headers: Record<string, string>, connections: number): Promise<{ rps: number; errors: number }> {
  return new Promise((resolve, reject) =>
    autocannon({ url, headers, connections, duration, pipelining: 1 }, (err, r) =>
      err ? reject(err) : resolve({ rps: r.requests.average, errors: r.errors + r.non2xx }),
    ),
  );
}

/** p50 of `n` sequential requests on one kept-alive socket, in ms (autocannon's histogram has 1 ms steps). */
async function latencyP50(url: string, headers: Record<string, string>, n = 2000): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = process.hrtime.bigint();
    await new Promise<void>((resolve, reject) => {
      const req = request(url, { headers, agent }, (res) => {
        if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
    times.push(Number(process.hrtime.bigint() - started) / 1e6);
  }
  agent.destroy();
  return median(times);
}

async function download(url: string, headers: Record<string, string>): Promise<{ mbps: number; peakRssGrowth: number }> {
  global.gc?.();
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 10);
  const started = process.hrtime.bigint();
  const bytes = await new Promise<number>((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let n = 0;
      res.on('data', (c: Buffer) => (n += c.length));
      res.on('end', () => resolve(n));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  clearInterval(timer);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (bytes !== DOWNLOAD) throw new Error(`downloaded ${bytes} bytes`);
  return { mbps: bytes / 1048576 / seconds, peakRssGrowth: Math.max(peak, process.memoryUsage.rss()) - base };
}

const provider = await startProvider();
const terapi = await startTerapi(provider.url);
const rows: Record<string, number[]> = {};
const push = (k: string, v: number) => (rows[k] ??= []).push(v);
try {
  // warm-up of both paths (JIT, pools)
  await load(`${provider.url}/user`, {}, 10);
  await load(`${terapi.url}/user`, terapi.headers, 10);
  for (let round = 0; round < rounds; round++) {
    const d50 = await load(`${provider.url}/user`, {}, 50);
    const p50c = await load(`${terapi.url}/user`, terapi.headers, 50);
    if (d50.errors || p50c.errors) throw new Error('errors during the load runs');
    const d1 = await latencyP50(`${provider.url}/user`, {});
    const p1 = await latencyP50(`${terapi.url}/user`, terapi.headers);
    push('direct rps', d50.rps);
    push('proxied rps', p50c.rps);
    push('rps ratio', p50c.rps / d50.rps);
    push('direct p50 ms (1 conn)', d1);
    push('proxied p50 ms (1 conn)', p1);
    push('added p50 ms', p1 - d1);
    const dd = await download(`${provider.url}/bytes/${DOWNLOAD}`, {});
    const pd = await download(`${terapi.url}/bytes/${DOWNLOAD}`, terapi.headers);
    push('direct MB/s', dd.mbps);
    push('proxied MB/s', pd.mbps);
    push('throughput ratio', pd.mbps / dd.mbps);
    push('proxied peak RSS growth MB', pd.peakRssGrowth / 1048576);
  }
  const load1 = (await import('node:os')).loadavg()[0]!;
  process.stdout.write(`rounds=${rounds} duration=${duration}s loadavg(1m)=${load1.toFixed(2)}\n`);
  for (const [k, v] of Object.entries(rows))
    process.stdout.write(`${k.padEnd(28)} median ${median(v).toFixed(2)}  (${v.map((x) => x.toFixed(2)).join(', ')})\n`);
} finally {
  await terapi.stop();
  provider.stop();
}
