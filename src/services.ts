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
import { createEgressFetch } from './lib/egress.js';
import type { Logger } from './lib/logger.js';
import type { Vault } from './lib/vault.js';
import { createOAuthClient } from './oauth/client.js';
import { createAuthFlows } from './oauth/flow.js';
import type { Catalog } from './providers/catalog.js';
import { createTokenService } from './tokens/service.js';
import { version } from './version.js';

export type ServicesConfig = Pick<
  Config,
  | 'metadataLimitBytes'
  | 'allowProviderUrlOverrides'
  | 'keyCacheTtlMs'
  | 'egress'
  | 'refreshMarginSeconds'
  | 'connectSessionTtlSeconds'
  | 'serverUrl'
>;

export interface ServiceDeps {
  config: ServicesConfig;
  database: Database;
  vault: Vault;
  catalog: Catalog;
  logger: Logger;
}

export type Services = Awaited<ReturnType<typeof createServices>>;

/**
 * The service layer every door shares (HTTP routes, the worker's background jobs), wired once per
 * process with its caches and its one LISTEN session for cross-process invalidation.
 */
export async function createServices(deps: ServiceDeps) {
  const { config, database, vault, catalog, logger } = deps;
  const db = database.db;

  const keyCache = createKeyCache({ ttlMs: config.keyCacheTtlMs, load: (hash) => findEnvironmentByKeyHash(db, hash) });
  const hub = await createNotificationHub(database);
  hub.subscribe((kind, id) => {
    if (kind === 'env') keyCache.invalidateEnvironment(id);
  });

  const egressFetch = createEgressFetch({
    policy: { allowPrivateNetworks: config.egress.allowPrivateNetworks, allowedHosts: config.egress.allowedHosts },
    timeoutMs: config.egress.timeoutMs,
    userAgent: `Terapi/${version}`,
  });
  const oauth = createOAuthClient({ fetch: egressFetch, allowInsecure: config.egress.allowPrivateNetworks });
  const reader = createConnectionReader({ db, hub, ttlMs: config.keyCacheTtlMs });
  const connections = createConnectionService({ db, vault, catalog, metadataLimitBytes: config.metadataLimitBytes, fetch: egressFetch, reader, hub });

  return {
    keyCache,
    environments: createEnvironmentService({ db, keyCache }),
    integrations: createIntegrationService({ db, vault, catalog, allowProviderUrlOverrides: config.allowProviderUrlOverrides, hub }),
    connections,
    tokens: createTokenService({ db, vault, catalog, oauth, hub, log: logger, marginSeconds: config.refreshMarginSeconds, reader }),
    sessions: createConnectSessionService({ db, ttlSeconds: config.connectSessionTtlSeconds, serverUrl: config.serverUrl }),
    flows: createAuthFlows({ db, vault, catalog, oauth, connections, fetch: egressFetch, serverUrl: config.serverUrl }),
    close: () => hub.close(),
  };
}
