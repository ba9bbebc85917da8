import type { Config } from './config.js';
import { createConnectSessionService } from './connect/service.js';
import { createConnectionReader } from './connections/reader.js';
import { createConnectionService } from './connections/service.js';
import type { Database } from './db/client.js';
import { createNotificationHub } from './db/notifications.js';
import { createKeyCache } from './environments/key-cache.js';
import { findEnvironmentByKeyHash } from './environments/repository.js';
import { createEnvironmentService } from './environments/service.js';
import { createIntegrationService } from './integrations/service.js';
import { createEgressFetch, type HostLookup } from './lib/egress.js';
import { createEgressStream } from './lib/egress/stream.js';
import type { Logger } from './lib/logger.js';
import type { Vault } from './lib/vault.js';
import { createOAuthClient } from './oauth/client.js';
import { createAuthFlows } from './oauth/flow.js';
import type { Catalog } from './providers/catalog.js';
import { createTokenService } from './tokens/service.js';
import { version } from './version.js';
import { createActionRunner } from './actions/runner.js';
import { createActionService } from './actions/service.js';
import type { FunctionDefinition } from './functions/define.js';
import { createFunctionRegistry } from './functions/registry.js';
import { createFunctionRuntime } from './functions/runtime.js';
import { createFunctionService } from './functions/service.js';
import { createQueues } from './queue/queues.js';
import type { RedisTarget } from './queue/redis.js';
import { createRecordPurger } from './records/purges.js';
import { createRecordService } from './records/service.js';
import { createSyncRunner } from './syncs/runner.js';
import { createSyncService } from './syncs/service.js';
import { createWebhookService } from './webhooks/service.js';
import { createProxyService } from './proxy/service.js';

export type ServicesConfig = Pick<
  Config,
  | 'metadataLimitBytes'
  | 'allowProviderUrlOverrides'
  | 'keyCacheTtlMs'
  | 'egress'
  | 'refreshMarginSeconds'
  | 'connectSessionTtlSeconds'
  | 'serverUrl'
  | 'queues'
  | 'runs'
  | 'webhooks'
  | 'proxy'
> & {
  /** `lookup`: DNS resolution for the egress client (tests answer without the network); the system resolver otherwise. */
  egress: { lookup?: HostLookup };
};

export interface ServiceDeps {
  config: ServicesConfig;
  database: Database;
  vault: Vault;
  catalog: Catalog;
  logger: Logger;
  /** Where the queues live (REDIS_URL, or the embedded redis-server). */
  redis: RedisTarget;
  /** Functions beyond the built-in library, by provider (an embedding application's own). */
  extraFunctions?: Record<string, readonly FunctionDefinition[]>;
}

export type Services = Awaited<ReturnType<typeof createServices>>;

/** Syncs due now whose jobs are added at once; beyond it the scheduler's tick wakes them. */
const MAX_SYNCS_WOKEN_AT_ONCE = 100;

/**
 * The service layer every door shares (HTTP routes, the worker's background jobs), wired once per
 * process with its caches and its one LISTEN session for cross-process invalidation.
 */
export async function createServices(deps: ServiceDeps) {
  const { config, database, vault, catalog, logger } = deps;
  const db = database.db;

  const keyCache = createKeyCache({ ttlMs: config.keyCacheTtlMs, load: (hash) => findEnvironmentByKeyHash(db, hash) });
  const hub = await createNotificationHub(database, { log: logger });
  hub.subscribe((kind, id) => {
    if (kind === 'env') keyCache.invalidateEnvironment(id);
  });
  hub.onResync(() => keyCache.clear());

  const egressPolicy = { allowPrivateNetworks: config.egress.allowPrivateNetworks, allowedHosts: config.egress.allowedHosts };
  const egressFetch = createEgressFetch({
    policy: egressPolicy,
    timeoutMs: config.egress.timeoutMs,
    userAgent: `Terapi/${version}`,
    lookup: config.egress.lookup,
  });
  const oauth = createOAuthClient({ fetch: egressFetch, allowInsecure: config.egress.allowPrivateNetworks });
  const reader = createConnectionReader({ db, hub, ttlMs: config.keyCacheTtlMs });
  const queues = createQueues({ target: deps.redis, prefix: config.queues.prefix, log: logger });
  const registry = createFunctionRegistry(deps.extraFunctions);
  // Wakes workers now for a few syncs (a trigger, a start for one connection). Every sync passed here
  // is already due in Postgres, so a larger set (a sync enabled on a big integration) is left to the
  // scheduler's next tick, which adds its jobs in bounded bulks.
  const enqueueSyncs = async (ids: readonly number[]) => {
    if (ids.length > MAX_SYNCS_WOKEN_AT_ONCE) return;
    const at = Date.now();
    await queues.addBulk(
      'syncs',
      ids.map((id) => ({ data: { syncId: id }, opts: { jobId: `sync-${id}-${at}` } })),
    );
  };

  const purges = createRecordPurger({ db, queues, log: logger });

  // Each service receives what it reads of other domains (narrowed lookups), never their repositories.
  const integrations = createIntegrationService({
    db,
    vault,
    catalog,
    allowProviderUrlOverrides: config.allowProviderUrlOverrides,
    allowInsecureOAuthUrls: config.egress.allowPrivateNetworks,
    hub,
    purges,
  });
  const functions = createFunctionService({ db, registry, onSyncsDue: enqueueSyncs, integrations: integrations.lookup, purges });
  const connections = createConnectionService({
    db,
    vault,
    catalog,
    metadataLimitBytes: config.metadataLimitBytes,
    fetch: egressFetch,
    reader,
    hub,
    log: logger,
    integrations: integrations.lookup,
    schedules: functions.schedules,
    purges,
  });
  const tokens = createTokenService({
    db,
    vault,
    catalog,
    oauth,
    hub,
    log: logger,
    marginSeconds: config.refreshMarginSeconds,
    reader,
    connections: connections.lookup,
    integrations: integrations.lookup,
  });
  const sessions = createConnectSessionService({
    db,
    catalog,
    ttlSeconds: config.connectSessionTtlSeconds,
    serverUrl: config.serverUrl,
    connections: connections.lookup,
    integrations: integrations.lookup,
  });
  const records = createRecordService({ db, vault, reader, registry });
  const runtime = createFunctionRuntime({
    db,
    catalog,
    tokens,
    connections: connections.lookup,
    integrations: integrations.lookup,
    fetch: egressFetch,
    retries: config.runs.providerRetries,
  });

  return {
    db,
    queues,
    registry,
    keyCache,
    environments: createEnvironmentService({ db, keyCache }),
    integrations,
    connections,
    tokens,
    sessions,
    flows: createAuthFlows({
      db,
      vault,
      catalog,
      oauth,
      connections,
      integrations: integrations.lookup,
      sessions,
      fetch: egressFetch,
      serverUrl: config.serverUrl,
    }),
    functions,
    syncs: createSyncService({
      db,
      vault,
      reader,
      registry,
      connections: connections.lookup,
      integrations: integrations.lookup,
      records: records.lookup,
      enqueue: enqueueSyncs,
    }),
    actions: createActionService({ db, reader, registry, functions: functions.lookup, queues, waitMs: config.runs.actionWaitMs }),
    records,
    purges,
    proxy: createProxyService({
      catalog,
      tokens,
      integrations: integrations.lookup,
      egress: createEgressStream({ policy: egressPolicy, idleTimeoutMs: config.proxy.timeoutMs, lookup: config.egress.lookup }),
      allowProviderUrlOverrides: config.allowProviderUrlOverrides,
      maxRetryDelayMs: config.proxy.timeoutMs,
      bodyLimitBytes: config.proxy.bodyLimitBytes,
      log: logger,
    }),
    webhooks: createWebhookService({
      db,
      vault,
      queues,
      fetch: egressFetch,
      egressPolicy,
      lookup: config.egress.lookup,
      log: logger,
      maxAttempts: config.webhooks.maxAttempts,
      backoffMs: config.webhooks.backoffMs,
    }),
    syncRunner: createSyncRunner({
      db,
      registry,
      runtime,
      connections: connections.lookup,
      log: logger,
      leaseMs: config.runs.leaseMs,
      timeoutMs: config.runs.syncTimeoutMs,
      enqueue: (id) => enqueueSyncs([id]),
    }),
    actionRunner: createActionRunner({
      db,
      registry,
      runtime,
      connections: connections.lookup,
      reader,
      log: logger,
      timeoutMs: config.runs.actionTimeoutMs,
      serverUrl: config.serverUrl,
    }),
    async close() {
      await connections.settled();
      await connections.flushFetchStamps();
      await queues.close();
      await hub.close();
    },
  };
}
