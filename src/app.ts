import { randomUUID } from 'node:crypto';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { adminRoutes } from './admin/routes.js';
import type { Config } from './config.js';
import { nangoConnectionRoutes } from './connections/nango-routes.js';
import { connectionRoutes } from './connections/routes.js';
import { createConnectionService } from './connections/service.js';
import type { Database } from './db/client.js';
import { createKeyCache } from './environments/key-cache.js';
import { findEnvironmentByKeyHash } from './environments/repository.js';
import { createNotificationHub } from './db/notifications.js';
import { createEnvironmentService } from './environments/service.js';
import { healthRoutes } from './health/routes.js';
import { adminAuth, environmentAuth } from './http/auth.js';
import { registerErrorHandling } from './http/errors.js';
import { terapiFamily, v1Family } from './http/families.js';
import { tidyOpenApi } from './http/openapi-tidy.js';
import { nangoIntegrationRoutes } from './integrations/nango-routes.js';
import { integrationRoutes } from './integrations/routes.js';
import { createIntegrationService } from './integrations/service.js';
import { createEgressFetch } from './lib/egress.js';
import { createOAuthClient } from './oauth/client.js';
import { tokenRoutes } from './tokens/routes.js';
import { createTokenService } from './tokens/service.js';
import type { Logger } from './lib/logger.js';
import type { Vault } from './lib/vault.js';
import type { Catalog } from './providers/catalog.js';
import { providerRoutes } from './providers/routes.js';
import { version } from './version.js';

export type AppConfig = Pick<
  Config,
  | 'bodyLimitBytes'
  | 'metadataLimitBytes'
  | 'allowProviderUrlOverrides'
  | 'adminKey'
  | 'keyCacheTtlMs'
  | 'egress'
  | 'refreshMarginSeconds'
  | 'connectSessionTtlSeconds'
  | 'serverUrl'
>;

export interface AppDeps {
  config: AppConfig;
  database: Database;
  vault: Vault;
  catalog: Catalog;
  logger: Logger;
}

/** Builds the HTTP application; never listens (server.ts does, tests inject). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database, vault, catalog } = deps;
  const db = database.db;

  const app = Fastify({
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1000 },
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  registerErrorHandling(app);
  app.addHook('onSend', async (req, reply) => {
    reply.header('x-request-id', req.id);
  });

  const keyCache = createKeyCache({ ttlMs: config.keyCacheTtlMs, load: (hash) => findEnvironmentByKeyHash(db, hash) });
  const hub = await createNotificationHub(database);
  hub.subscribe((kind, id) => {
    if (kind === 'env') keyCache.invalidateEnvironment(id);
  });
  app.addHook('onClose', async () => hub.close());

  const environments = createEnvironmentService({ db, keyCache });
  const integrations = createIntegrationService({ db, vault, catalog, allowProviderUrlOverrides: config.allowProviderUrlOverrides });
  const connections = createConnectionService({ db, vault, catalog, metadataLimitBytes: config.metadataLimitBytes });
  const egressFetch = createEgressFetch({
    policy: { allowPrivateNetworks: config.egress.allowPrivateNetworks, allowedHosts: config.egress.allowedHosts },
    timeoutMs: config.egress.timeoutMs,
    userAgent: `Terapi/${version}`,
  });
  const oauth = createOAuthClient({ fetch: egressFetch, allowInsecure: config.egress.allowPrivateNetworks });
  const tokens = createTokenService({ db, vault, catalog, oauth, hub, log: deps.logger, marginSeconds: config.refreshMarginSeconds });

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Terapi API',
        version,
        description:
          'Terapi is a self-hostable embedded integration platform: it runs the OAuth dance for your customers, keeps their tokens fresh, syncs their data and performs actions on their behalf.',
      },
      servers: [{ url: 'http://localhost:3003', description: 'Terapi Self-Hosted API' }],
      components: {
        securitySchemes: {
          SecretKeyAuth: {
            type: 'apiKey',
            in: 'header',
            name: 'Authorization',
            description: "Secret key from Terapi environment settings. Passed as 'Bearer {secret_key}'",
          },
          AdminKeyAuth: { type: 'http', scheme: 'bearer', description: 'TERAPI_ADMIN_KEY of the server' },
        },
      },
      security: [{ SecretKeyAuth: [] }],
    },
    transform: jsonSchemaTransform,
    transformObject: (doc) => tidyOpenApi(jsonSchemaTransformObject(doc)),
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes, { database });

  await app.register(async (api) => {
    api.addHook('onRequest', environmentAuth(keyCache));
    await api.register(providerRoutes, { catalog, db });
    for (const family of [terapiFamily, v1Family]) {
      await api.register(integrationRoutes, { integrations, family });
      await api.register(connectionRoutes, { connections, family });
    }
    await api.register(nangoIntegrationRoutes, { integrations });
    await api.register(nangoConnectionRoutes, { connections, tokens });
    await api.register(tokenRoutes, { tokens });
  });

  await app.register(async (admin) => {
    admin.addHook('onRequest', adminAuth(config.adminKey, keyCache));
    await admin.register(adminRoutes, { environments });
  });

  return app;
}
