#!/usr/bin/env node
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { buildApp } from './app.js';
import { type Config, ConfigError, loadConfig } from './config.js';
import { type Database, openDatabase } from './db/client.js';
import { importUsage, parseImportArgs, runImportCommand, UsageError } from './cli/import.js';
import { bootstrapDefaultEnvironment } from './environments/bootstrap.js';
import { StartupError } from './lib/errors.js';
import { createLogger, type Logger } from './lib/logger.js';
import { createVault, generateKeySpec, parseEncryptionKeys, type Vault } from './lib/vault.js';
import { loadCatalog } from './providers/catalog.js';
import { startEmbeddedRedis, type RedisTarget } from './queue/redis.js';
import { startServer } from './server.js';
import { startWorkers } from './workers.js';
import { createServices } from './services.js';
import { createBackgroundRefresher } from './tokens/refresher.js';
import { version } from './version.js';

const roles = ['serve', 'api', 'worker', 'migrate'] as const;
type Role = (typeof roles)[number];

const usage = `terapi ${version} — self-hostable embedded integrations

Usage: terapi [role]

Roles:
  serve     API and background workers in one process (default)
  api       the HTTP API only (run several behind a load balancer)
  worker    background workers only (run several next to the API)
  migrate   apply database migrations and exit

Commands:
  import    import connections from an NDJSON or JSON file into a running server
            (terapi import --help)

Configuration comes from environment variables; see README.md.`;

/** Embedded mode keeps its encryption key in the data directory; an external database requires one. */
async function loadVault(config: Config): Promise<Vault> {
  if (config.encryptionKey) return createVault(parseEncryptionKeys(config.encryptionKey));
  if (config.databaseUrl) {
    throw new ConfigError(
      'TERAPI_ENCRYPTION_KEY is required when DATABASE_URL is set: secrets must be encrypted with a key you keep outside the database.\n' +
        'Generate one with `openssl rand -base64 32` and set TERAPI_ENCRYPTION_KEY to it.',
    );
  }
  const file = path.join(config.dataDir, 'encryption-key');
  let spec = (await readFile(file, 'utf8').catch(() => '')).trim();
  if (!spec) {
    spec = generateKeySpec();
    await writeFile(file, `${spec}\n`, { mode: 0o600, flag: 'wx' }).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
      spec = (await readFile(file, 'utf8')).trim();
    });
  }
  await chmod(file, 0o600);
  return createVault(parseEncryptionKeys(spec));
}

async function openAndMigrate(config: Config, log: Logger): Promise<Database> {
  const database = await openDatabase({
    databaseUrl: config.databaseUrl,
    poolSize: config.databasePoolSize,
    pgliteDir: path.join(config.dataDir, 'pgdata'),
    onError: (err) => log.error({ err }, 'database connection error'),
  });
  await database.migrate();
  return database;
}

/** `terapi import`: a client of a running server (its URL and key default to this configuration's). */
async function importCommand(argv: string[]): Promise<void> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${importUsage}\n`);
    return;
  }
  const config = loadConfig();
  try {
    const args = parseImportArgs(argv, { url: config.serverUrl, key: config.secretKey });
    process.exitCode = await runImportCommand(args, { stdout: (s) => process.stdout.write(s), stderr: (s) => process.stderr.write(s) });
  } catch (err) {
    process.stderr.write(`terapi import: ${err instanceof Error ? err.message : String(err)}\n`);
    if (err instanceof UsageError) process.stderr.write(`\n${importUsage}\n`);
    process.exitCode = err instanceof UsageError ? 2 : 1;
  }
}

async function main(argv: string[]): Promise<void> {
  const arg = argv[0] ?? 'serve';
  if (arg === '--help' || arg === '-h' || arg === 'help') {
    process.stdout.write(`${usage}\n`);
    return;
  }
  if (arg === '--version' || arg === '-v') {
    process.stdout.write(`${version}\n`);
    return;
  }
  if (arg === 'import') return importCommand(argv.slice(1));
  if (!roles.includes(arg as Role)) {
    process.stderr.write(`Unknown role "${arg}".\n\n${usage}\n`);
    process.exit(2);
  }
  const role = arg as Role;
  const config = loadConfig();
  const log = createLogger({ level: config.logLevel, pretty: config.logPretty });
  if (!config.databaseUrl || !config.redisUrl) await mkdir(config.dataDir, { recursive: true, mode: 0o700 });

  const vault = await loadVault(config);
  // Queues come first: without Redis there is nothing to do, so say so before touching the database.
  const embeddedRedis = config.redisUrl || role === 'migrate' ? undefined : await startEmbeddedRedis({ dataDir: config.dataDir, log });
  const database = await openAndMigrate(config, log);
  const dbLabel = config.databaseUrl ? 'PostgreSQL (DATABASE_URL)' : `embedded PGlite (${path.join(config.dataDir, 'pgdata')})`;
  if (role === 'migrate') {
    log.info({ database: database.kind }, 'migrations applied');
    await database.close();
    return;
  }

  const redis: RedisTarget = config.redisUrl ? { url: config.redisUrl } : embeddedRedis!.target;
  const catalog = loadCatalog();
  const services = await createServices({ config, database, vault, catalog, logger: log, redis });
  const workers = role === 'api' ? undefined : await startWorkers({ services, config, redis, log });
  const refresher = createBackgroundRefresher({
    db: database.db,
    catalog,
    tokens: services.tokens,
    flows: services.flows,
    log,
    marginSeconds: config.refreshMarginSeconds,
    intervalSeconds: config.refreshIntervalSeconds,
  });
  const shutdownWork = async () => {
    await refresher.stop();
    await workers?.stop();
    await services.close();
    await embeddedRedis?.stop();
    await database.close();
  };

  if (role === 'worker') {
    refresher.start();
    log.info(
      {
        refreshIntervalSeconds: config.refreshIntervalSeconds,
        syncConcurrency: config.queues.syncConcurrency,
        actionConcurrency: config.queues.actionConcurrency,
      },
      'worker started: syncs, actions, webhooks, scheduler and background token refresh',
    );
    let stopping = false;
    const stop = async (signal: string) => {
      if (stopping) process.exit(1);
      stopping = true;
      log.info({ signal }, 'worker stopping: finishing actions and webhooks, handing running syncs back');
      await shutdownWork();
      process.exit(0);
    };
    process.once('SIGTERM', () => void stop('SIGTERM'));
    process.once('SIGINT', () => void stop('SIGINT'));
    return;
  }

  const boot = await bootstrapDefaultEnvironment({
    db: database.db,
    environments: services.environments,
    configuredKey: config.secretKey,
    keyFileDir: config.databaseUrl ? undefined : config.dataDir,
  });

  const app = await buildApp({ config, database, vault, catalog, logger: log, services, redis });
  if (role === 'serve') refresher.start();
  const address = await startServer(app, {
    host: config.host,
    port: config.port,
    shutdownTimeoutMs: config.shutdownTimeoutMs,
    log,
    onShutdown: shutdownWork,
  });

  const keyLine =
    boot.source === 'TERAPI_SECRET_KEY'
      ? `${boot.secretKey!.slice(0, 14)}… (from TERAPI_SECRET_KEY)`
      : boot.secretKey
        ? `${boot.secretKey}${boot.source === 'generated' && config.databaseUrl ? '  (shown once: store it now)' : ''}`
        : 'rotated by an operator; use the key you received (or POST /admin/environments/{id}/rotate-secret-key)';
  process.stdout.write(
    [
      '',
      `  Terapi ${version} (${role}) listening on ${address}`,
      `  database:    ${dbLabel}`,
      `  redis:       ${config.redisUrl ? 'REDIS_URL' : `embedded redis-server (${path.join(config.dataDir, 'redis')})`}`,
      `  secret key:  ${keyLine}`,
      `  API docs:    ${address}/docs`,
      `  try:         curl -H "Authorization: Bearer <secret key>" ${address}/providers`,
      '',
      '',
    ].join('\n'),
  );
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof StartupError) {
    process.stderr.write(`terapi: ${err.message}\n`);
  } else {
    process.stderr.write(`terapi: failed to start: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  }
  process.exit(1);
});
