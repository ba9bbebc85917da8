/**
 * The server the scale benchmark measures: Terapi's `serve` role (API, workers, background token
 * refresh) built as src/main.ts builds it, on a database seeded by bench/scale/seed.ts. Usage:
 *
 *   node --import tsx bench/scale/server.ts
 *
 * with DATABASE_URL, REDIS_URL, TERAPI_ENCRYPTION_KEY, TERAPI_QUEUE_PREFIX (a unique one: the
 * queues are deleted on exit) and optionally LOG_LEVEL and TERAPI_RETENTION_DAYS set. Listens on a
 * free port on 127.0.0.1 and prints ONE JSON line on stdout: {"port", "pid"}.
 *
 * The sync and scheduler queues are paused, so no sync runs (they would call real provider APIs)
 * and no tick runs on its own: the benchmark ticks itself, to time each tick. Commands on stdin,
 * one per line, each answered with one JSON line on stdout ({"error"} when it failed):
 *   stats         → {"rss", "heapUsed", "cpuUser", "cpuSystem"}  (bytes, µs)
 *   tick          → {"ms"}   one scheduler pass (workers.tick), the sync queue emptied first so
 *                            each tick enqueues its due syncs again
 *   due-query     → {"ms", "rows"}  listRunnableSyncIds(db, 1000) alone, if the module has it
 *   housekeeping  → {"ms", "result"}  one retention pass (workers.housekeeping)
 * SIGTERM, SIGINT or stdin closing: close the server, delete the queues' Redis keys, exit.
 */
import { createInterface } from 'node:readline';
import pino from 'pino';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { openDatabase } from '../../src/db/client.js';
import { createLogger } from '../../src/lib/logger.js';
import { createVault, parseEncryptionKeys } from '../../src/lib/vault.js';
import { loadCatalog } from '../../src/providers/catalog.js';
import { queueDefinitions, type QueueName } from '../../src/queue/queues.js';
import { createServices } from '../../src/services.js';
import { createBackgroundRefresher } from '../../src/tokens/refresher.js';
import { startWorkers } from '../../src/workers.js';

const say = (msg: string) => process.stderr.write(`[scale server] ${msg}\n`);
const config = loadConfig({ ...process.env, LOG_LEVEL: process.env.LOG_LEVEL ?? 'warn' });
if (!config.databaseUrl || !config.redisUrl || !config.encryptionKey)
  throw new Error('DATABASE_URL, REDIS_URL and TERAPI_ENCRYPTION_KEY are required');
// Logs to stderr, so stdout carries only the answers.
const log = createLogger({ level: config.logLevel, destination: pino.destination({ dest: 2, sync: false }) });
const vault = createVault(parseEncryptionKeys(config.encryptionKey));
const database = await openDatabase({
  databaseUrl: config.databaseUrl,
  poolSize: config.databasePoolSize,
  onError: (err) => log.error({ err }, 'database connection error'),
});
await database.migrate();
const redis = { url: config.redisUrl };
const catalog = loadCatalog();
const services = await createServices({ config, database, vault, catalog, logger: log, redis });
// Paused before the workers start, so they never take a sync job or a scheduled tick.
for (const name of ['syncs', 'scheduler'] as const) await services.queues.queue(name).pause();
const workers = await startWorkers({ services, config, redis, log });
const refresher = createBackgroundRefresher({
  db: database.db,
  catalog,
  tokens: services.tokens,
  flows: services.flows,
  log,
  marginSeconds: config.refreshMarginSeconds,
  intervalSeconds: config.refreshIntervalSeconds,
});
const app = await buildApp({ config, database, vault, catalog, logger: log, services, redis });
refresher.start();
await app.listen({ host: '127.0.0.1', port: 0 });
const address = app.server.address();
const port = typeof address === 'object' && address ? address.port : 0;

let stopping = false;
async function shutdown(code: number) {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(1), 30_000);
  hard.unref();
  try {
    await app.close();
    await refresher.stop();
    await workers.stop();
    // The queues of this run's prefix go with it (a unique prefix per run: nobody else's keys).
    for (const name of Object.keys(queueDefinitions) as QueueName[]) {
      await services.queues
        .queue(name)
        .obliterate({ force: true })
        .catch((err: unknown) => say(`could not delete queue ${name}: ${String(err)}`));
    }
    await services.close();
    await database.close();
  } catch (err) {
    say(`shutdown: ${String(err)}`);
    code ||= 1;
  }
  process.exit(code);
}
process.once('SIGTERM', () => void shutdown(0));
process.once('SIGINT', () => void shutdown(0));
process.stdin.on('end', () => void shutdown(0));

const timed = async <T>(work: () => Promise<T>) => {
  const started = performance.now();
  const result = await work();
  return { ms: performance.now() - started, result };
};

const commands: Record<string, () => Promise<object>> = {
  async stats() {
    const m = process.memoryUsage();
    const c = process.cpuUsage();
    return { rss: m.rss, heapUsed: m.heapUsed, cpuUser: c.user, cpuSystem: c.system };
  },
  async tick() {
    await services.queues.queue('syncs').drain();
    const { ms } = await timed(() => workers.tick());
    const waiting = await services.queues.queue('syncs').getWaitingCount();
    return { ms, enqueued: waiting };
  },
  async 'due-query'() {
    const repo = (await import('../../src/syncs/repository.js')) as Record<string, unknown>;
    const list = repo.listRunnableSyncIds;
    if (typeof list !== 'function') throw new Error('listRunnableSyncIds is not exported by src/syncs/repository.ts');
    const { ms, result } = await timed(() => (list as (db: unknown, limit: number) => Promise<unknown[]>)(database.db, 1000));
    return { ms, rows: Array.isArray(result) ? result.length : undefined };
  },
  async housekeeping() {
    const { ms, result } = await timed(() => workers.housekeeping());
    return { ms, result };
  },
};

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = commands[line.trim()];
  if (!command) return void process.stdout.write(`${JSON.stringify({ error: `unknown command "${line.trim()}"` })}\n`);
  command().then(
    (answer) => process.stdout.write(`${JSON.stringify(answer)}\n`),
    (err: unknown) => process.stdout.write(`${JSON.stringify({ error: err instanceof Error ? err.message : String(err) })}\n`),
  );
});
say(`listening on 127.0.0.1:${port}`);
process.stdout.write(`${JSON.stringify({ port, pid: process.pid })}\n`);
