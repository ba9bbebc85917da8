import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { buildApp } from './app.js';
import { loadConfig } from './config.js';
import { openDatabase } from './db/client.js';
import { createLogger } from './lib/logger.js';
import { createVault } from './lib/vault.js';
import { loadCatalog } from './providers/catalog.js';

export const openApiFile = fileURLToPath(new URL('../openapi/openapi.json', import.meta.url));

/** The OpenAPI document as generated from the route schemas (what `openapi/openapi.json` must equal). */
export async function renderOpenApi(): Promise<string> {
  // The document depends only on route schemas; an empty in-memory database satisfies buildApp.
  const database = await openDatabase({});
  const defaults = loadConfig({});
  const app = await buildApp({
    config: {
      bodyLimitBytes: 1,
      importBodyLimitBytes: 1024,
      metadataLimitBytes: 1,
      allowProviderUrlOverrides: false,
      adminKey: undefined,
      keyCacheTtlMs: 0,
      egress: { allowPrivateNetworks: false, allowedHosts: [], timeoutMs: 1 },
      refreshMarginSeconds: 0,
      connectSessionTtlSeconds: 60,
      serverUrl: defaults.serverUrl,
      queues: defaults.queues,
      runs: defaults.runs,
      webhooks: defaults.webhooks,
      // Off: nothing here serves requests (and the limits' Redis client is never opened).
      rateLimit: { perEnvironment: 0, perIp: 0, windowMs: defaults.rateLimit.windowMs },
      shedding: { maxEventLoopDelayMs: 0, maxDatabaseWaiting: 0 },
      proxy: defaults.proxy,
    },
    // Never contacted: producers connect on their first job.
    redis: { url: 'redis://127.0.0.1:6379' },
    database,
    vault: createVault([]),
    catalog: loadCatalog(),
    logger: createLogger({ level: 'silent' }),
  });
  try {
    await app.ready();
    return `${JSON.stringify(app.swagger(), null, 2)}\n`;
  } finally {
    await app.close();
    await database.close();
  }
}

/** `npm run openapi`: regenerate the committed document. */
export async function writeOpenApi(): Promise<void> {
  await writeFile(openApiFile, await renderOpenApi());
}
