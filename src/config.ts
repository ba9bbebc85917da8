import path from 'node:path';
import { z } from 'zod';
import { StartupError } from './lib/errors.js';

const bool = z.enum(['true', 'false', '1', '0', 'yes', 'no']).transform((v) => v === 'true' || v === '1' || v === 'yes');

const urlWithProtocol = (protocols: RegExp) => z.url({ protocol: protocols });

/**
 * The URL the server is reached at when TERAPI_SERVER_URL is unset: the address it listens on, so
 * connect links, OAuth callbacks and status URLs share one origin with the startup banner (a
 * browser treats `localhost` and `127.0.0.1` as different origins). A wildcard address is not a
 * place to send a browser, so it stands for the loopback address.
 */
export function defaultServerUrl(host: string, port: number): string {
  const h =
    host === '0.0.0.0'
      ? '127.0.0.1'
      : host === '::' || host === '[::]'
        ? '[::1]'
        : host.includes(':') && !host.startsWith('[')
          ? `[${host}]`
          : host;
  return `http://${h}:${port}`;
}

/**
 * The one schema for Terapi's environment. Nothing else reads process.env.
 * Secrets have no defaults: absent means "generate and keep in the data directory" (embedded mode)
 * or "refuse to start" (external database), never a value baked into the code.
 */
export const configSchema = z
  .object({
    PORT: z.coerce.number().int().min(0).max(65_535).default(3003),
    HOST: z.string().min(1).max(255).default('127.0.0.1'),
    DATABASE_URL: urlWithProtocol(/^postgres(ql)?$/).optional(),
    DATABASE_POOL_SIZE: z.coerce.number().int().min(1).max(500).default(20),
    REDIS_URL: urlWithProtocol(/^rediss?$/).optional(),
    TERAPI_DATA_DIR: z.string().min(1).max(4096).default('./.terapi'),
    TERAPI_SECRET_KEY: z
      .string()
      .regex(/^[A-Za-z0-9_\-.]{24,200}$/, 'must be 24-200 characters of letters, digits, _ - .')
      .optional(),
    TERAPI_ENCRYPTION_KEY: z.string().min(1).max(10_000).optional(),
    TERAPI_SERVER_URL: urlWithProtocol(/^https?$/).optional(),
    TERAPI_ADMIN_KEY: z
      .string()
      .regex(/^\S{32,200}$/, 'must be 32-200 characters without spaces')
      .optional(),
    TERAPI_BODY_LIMIT_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .max(100 * 1024 * 1024)
      .default(1024 * 1024),
    TERAPI_IMPORT_BODY_LIMIT_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .max(1024 * 1024 * 1024)
      .default(64 * 1024 * 1024),
    TERAPI_METADATA_LIMIT_BYTES: z.coerce
      .number()
      .int()
      .min(256)
      .max(10 * 1024 * 1024)
      .default(64 * 1024),
    TERAPI_ALLOW_PROVIDER_URL_OVERRIDES: bool.default(false),
    TERAPI_SHUTDOWN_TIMEOUT_MS: z.coerce.number().int().min(0).max(600_000).default(15_000),
    TERAPI_KEY_CACHE_TTL_MS: z.coerce.number().int().min(0).max(3_600_000).default(60_000),
    TERAPI_EGRESS_ALLOW_PRIVATE: bool.default(false),
    TERAPI_EGRESS_ALLOWED_HOSTS: z
      .string()
      .max(10_000)
      .regex(/^[a-zA-Z0-9.,\-\s]*$/, 'must be a comma-separated list of host names')
      .default(''),
    TERAPI_EGRESS_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
    TERAPI_PROXY_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(60_000),
    TERAPI_PROXY_BODY_LIMIT_BYTES: z.coerce
      .number()
      .int()
      .min(1024)
      .max(10 * 1024 * 1024 * 1024)
      .default(100 * 1024 * 1024),
    TERAPI_CONNECT_SESSION_TTL_SECONDS: z.coerce.number().int().min(60).max(86_400).default(1800),
    TERAPI_REFRESH_MARGIN_SECONDS: z.coerce.number().int().min(0).max(86_400).default(900),
    TERAPI_REFRESH_INTERVAL_SECONDS: z.coerce.number().int().min(0).max(86_400).default(60),
    TERAPI_QUEUE_PREFIX: z
      .string()
      .regex(/^[a-zA-Z0-9_-]{1,64}$/, 'letters, digits, _ and - (at most 64)')
      .default('terapi'),
    TERAPI_SYNC_CONCURRENCY: z.coerce.number().int().min(1).max(500).default(4),
    TERAPI_ACTION_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(32),
    TERAPI_WEBHOOK_CONCURRENCY: z.coerce.number().int().min(1).max(1000).default(16),
    TERAPI_SYNC_TIMEOUT_SECONDS: z.coerce
      .number()
      .int()
      .min(1)
      .max(7 * 86_400)
      .default(6 * 3600),
    TERAPI_ACTION_TIMEOUT_SECONDS: z.coerce.number().int().min(1).max(86_400).default(300),
    TERAPI_ACTION_WAIT_SECONDS: z.coerce.number().int().min(0).max(3600).default(60),
    TERAPI_RUN_LEASE_SECONDS: z.coerce.number().int().min(2).max(3600).default(60),
    TERAPI_PROVIDER_RETRIES: z.coerce.number().int().min(0).max(20).default(8),
    TERAPI_SCHEDULER_INTERVAL_SECONDS: z.coerce.number().int().min(1).max(3600).default(5),
    TERAPI_RETENTION_DAYS: z.coerce.number().int().min(1).max(3650).default(30),
    TERAPI_WEBHOOK_MAX_ATTEMPTS: z.coerce.number().int().min(1).max(100).default(15),
    TERAPI_WEBHOOK_BACKOFF_SECONDS: z.coerce.number().min(0.05).max(3600).default(5),
    TERAPI_RATE_LIMIT_ENVIRONMENT: z.coerce.number().int().min(0).max(10_000_000).default(10_000),
    TERAPI_RATE_LIMIT_IP: z.coerce.number().int().min(0).max(10_000_000).default(1000),
    TERAPI_RATE_LIMIT_WINDOW_MS: z.coerce.number().int().min(100).max(3_600_000).default(1000),
    TERAPI_SHED_EVENT_LOOP_DELAY_MS: z.coerce.number().int().min(0).max(60_000).default(1000),
    TERAPI_SHED_DATABASE_WAITING: z.coerce.number().int().min(0).max(100_000).default(200),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    LOG_PRETTY: bool.default(false),
  })
  .transform((c) => ({
    port: c.PORT,
    host: c.HOST,
    databaseUrl: c.DATABASE_URL,
    databasePoolSize: c.DATABASE_POOL_SIZE,
    redisUrl: c.REDIS_URL,
    dataDir: path.resolve(c.TERAPI_DATA_DIR),
    secretKey: c.TERAPI_SECRET_KEY,
    encryptionKey: c.TERAPI_ENCRYPTION_KEY,
    serverUrl: (c.TERAPI_SERVER_URL ?? defaultServerUrl(c.HOST, c.PORT)).replace(/\/+$/, ''),
    adminKey: c.TERAPI_ADMIN_KEY,
    bodyLimitBytes: c.TERAPI_BODY_LIMIT_BYTES,
    importBodyLimitBytes: c.TERAPI_IMPORT_BODY_LIMIT_BYTES,
    metadataLimitBytes: c.TERAPI_METADATA_LIMIT_BYTES,
    allowProviderUrlOverrides: c.TERAPI_ALLOW_PROVIDER_URL_OVERRIDES,
    shutdownTimeoutMs: c.TERAPI_SHUTDOWN_TIMEOUT_MS,
    keyCacheTtlMs: c.TERAPI_KEY_CACHE_TTL_MS,
    egress: {
      allowPrivateNetworks: c.TERAPI_EGRESS_ALLOW_PRIVATE,
      allowedHosts: c.TERAPI_EGRESS_ALLOWED_HOSTS.split(',')
        .map((h) => h.trim().toLowerCase())
        .filter(Boolean),
      timeoutMs: c.TERAPI_EGRESS_TIMEOUT_MS,
    },
    proxy: { timeoutMs: c.TERAPI_PROXY_TIMEOUT_MS, bodyLimitBytes: c.TERAPI_PROXY_BODY_LIMIT_BYTES },
    connectSessionTtlSeconds: c.TERAPI_CONNECT_SESSION_TTL_SECONDS,
    refreshMarginSeconds: c.TERAPI_REFRESH_MARGIN_SECONDS,
    refreshIntervalSeconds: c.TERAPI_REFRESH_INTERVAL_SECONDS,
    queues: {
      prefix: c.TERAPI_QUEUE_PREFIX,
      syncConcurrency: c.TERAPI_SYNC_CONCURRENCY,
      actionConcurrency: c.TERAPI_ACTION_CONCURRENCY,
      webhookConcurrency: c.TERAPI_WEBHOOK_CONCURRENCY,
    },
    runs: {
      syncTimeoutMs: c.TERAPI_SYNC_TIMEOUT_SECONDS * 1000,
      actionTimeoutMs: c.TERAPI_ACTION_TIMEOUT_SECONDS * 1000,
      actionWaitMs: c.TERAPI_ACTION_WAIT_SECONDS * 1000,
      leaseMs: c.TERAPI_RUN_LEASE_SECONDS * 1000,
      schedulerIntervalMs: c.TERAPI_SCHEDULER_INTERVAL_SECONDS * 1000,
      providerRetries: c.TERAPI_PROVIDER_RETRIES,
      retentionDays: c.TERAPI_RETENTION_DAYS,
    },
    webhooks: {
      maxAttempts: c.TERAPI_WEBHOOK_MAX_ATTEMPTS,
      backoffMs: Math.round(c.TERAPI_WEBHOOK_BACKOFF_SECONDS * 1000),
    },
    rateLimit: {
      perEnvironment: c.TERAPI_RATE_LIMIT_ENVIRONMENT,
      perIp: c.TERAPI_RATE_LIMIT_IP,
      windowMs: c.TERAPI_RATE_LIMIT_WINDOW_MS,
    },
    shedding: {
      maxEventLoopDelayMs: c.TERAPI_SHED_EVENT_LOOP_DELAY_MS,
      maxDatabaseWaiting: c.TERAPI_SHED_DATABASE_WAITING,
    },
    logLevel: c.LOG_LEVEL,
    logPretty: c.LOG_PRETTY,
  }));

export type Config = z.output<typeof configSchema>;

export class ConfigError extends StartupError {}

/** Parses an environment (process.env by default); a bad value throws naming the variable. */
export function loadConfig(env: Record<string, string | undefined> = process.env): Config {
  // Empty strings mean "unset" — docker-compose passes `VAR=` for undefined variables.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(cleaned);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(environment)'}: ${i.message}`);
    throw new ConfigError(`Invalid configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

/** Names of every variable the schema reads (used by the docker-compose test and the README check). */
export const configVariables = Object.keys(configSchema.in.shape);
