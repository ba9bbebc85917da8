/**
 * CPU per request of the request log at `info`, in-process (app.inject, no sockets), so that it
 * can be measured on a busy machine: one route shaped like GET /auth/token, with Terapi's logger
 * writing to a discarding stream, under three settings measured in alternation:
 *
 * - `warn`      no request lines (the baseline)
 * - `fastify`   Fastify's own two lines per request ("incoming request", "request completed")
 * - `access`    Terapi's one access line (src/http/access-log.ts), Fastify's lines off
 *
 *   npx tsx bench/access-log.ts [--requests=20000] [--rounds=5]
 */
import { Writable } from 'node:stream';
import Fastify, { type FastifyBaseLogger, LogController } from 'fastify';
import { registerAccessLog } from '../src/http/access-log.js';
import { createLogger } from '../src/lib/logger.js';

const argv = new Map(
  process.argv.slice(2).map((a) => {
    const [k, v] = a.replace(/^--/, '').split('=');
    return [k!, v ?? 'true'] as const;
  }),
);
const requests = Number(argv.get('requests') ?? 20_000);
const rounds = Number(argv.get('rounds') ?? 5);
let bytes = 0;
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    bytes += chunk.length;
    cb();
  },
});

async function build(mode: 'warn' | 'fastify' | 'access') {
  const logger = createLogger({ level: mode === 'warn' ? 'warn' : 'info', destination: sink });
  const app = Fastify({
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- as src/app.ts
    loggerInstance: logger as FastifyBaseLogger,
    ...(mode === 'access' && { logController: new LogController({ disableRequestLogging: true }) }),
  });
  if (mode === 'access') registerAccessLog(app, logger);
  app.get('/auth/token/:pk/:id', async () => ({ type: 'Bearer', access_token: 'gho_x', raw: {}, expires_at: '2030-01-01T00:00:00.000Z' }));
  await app.ready();
  return app;
}

const apps = { warn: await build('warn'), fastify: await build('fastify'), access: await build('access') };
const results: Record<string, number[]> = { warn: [], fastify: [], access: [] };
const headers = { authorization: 'Bearer sk_live_0123456789abcdef0123456789abcdef' };
for (let round = 0; round < rounds; round++) {
  for (const [mode, app] of Object.entries(apps)) {
    for (let i = 0; i < 500; i++) await app.inject({ method: 'GET', url: `/auth/token/github/conn-${i}`, headers });
    const before = process.cpuUsage();
    for (let i = 0; i < requests; i++) await app.inject({ method: 'GET', url: `/auth/token/github/conn-${i}`, headers });
    const used = process.cpuUsage(before);
    results[mode]!.push((used.user + used.system) / requests);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const base = median(results.warn!);
for (const mode of Object.keys(results)) {
  const us = median(results[mode]!);
  console.log(JSON.stringify({ mode, cpuUsPerRequest: Number(us.toFixed(2)), logCostUs: Number((us - base).toFixed(2)) }));
}
console.log(JSON.stringify({ logBytes: bytes }));
for (const app of Object.values(apps)) await app.close();
