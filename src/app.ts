import { randomUUID } from 'node:crypto';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, LogController } from 'fastify';
import {
  jsonSchemaTransform,
  jsonSchemaTransformObject,
  serializerCompiler,
  validatorCompiler,
  type ZodTypeProvider,
} from 'fastify-type-provider-zod';
import { adminRoutes } from './admin/routes.js';
import type { Config } from './config.js';
import { connectionImportRoutes } from './connections/import-routes.js';
import { nangoConnectionRoutes } from './connections/nango-routes.js';
import { connectionRoutes } from './connections/routes.js';
import { healthRoutes } from './health/routes.js';
import { adminAuth, environmentAuth } from './http/auth.js';
import { registerAccessLog } from './http/access-log.js';
import { frameworkErrors, registerErrorHandling } from './http/errors.js';
import { registerInputGuard } from './http/input-guard.js';
import { registerProtection } from './http/protection.js';
import { asV1Route, terapiFamily, v1Family } from './http/families.js';
import { tidyOpenApi } from './http/openapi-tidy.js';
import { nangoIntegrationRoutes } from './integrations/nango-routes.js';
import { integrationRoutes } from './integrations/routes.js';
import { tokenRoutes } from './tokens/routes.js';
import { connectPageRoutes } from './connect/page-routes.js';
import { connectSessionRoutes, connectSessionSelfRoutes } from './connect/routes.js';
import { providerRoutes } from './providers/routes.js';
import { version } from './version.js';
import { actionRoutes, actionStatusRoutes } from './actions/routes.js';
import { functionRoutes } from './functions/routes.js';
import { recordRoutes } from './records/routes.js';
import { nangoSyncRoutes } from './syncs/nango-routes.js';
import { runRoutes, syncRoutes } from './syncs/routes.js';
import { webhookRoutes } from './webhooks/routes.js';
import { proxyRoutes } from './proxy/routes.js';
import { createServices, type ServiceDeps, type Services, type ServicesConfig } from './services.js';

export type AppConfig = ServicesConfig & Pick<Config, 'bodyLimitBytes' | 'importBodyLimitBytes' | 'adminKey' | 'rateLimit' | 'shedding'>;

export interface AppDeps extends ServiceDeps {
  config: AppConfig;
  /** Services already wired by the caller (`serve` shares them with background work). */
  services?: Services;
}

/** Builds the HTTP application; never listens (server.ts does, tests inject). */
export async function buildApp(deps: AppDeps): Promise<FastifyInstance> {
  const { config, database, catalog } = deps;

  const app = Fastify({
    // The assertion picks Fastify's logger type for the instance (pino's own Logger type would make
    // every plugin signature disagree with it); the rule cannot see that it changes inference.
    // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion
    loggerInstance: deps.logger as FastifyBaseLogger,
    bodyLimit: config.bodyLimitBytes,
    requestIdHeader: 'x-request-id',
    genReqId: () => randomUUID(),
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 1000 },
    frameworkErrors,
    // One access line per request instead of Fastify's two (http/access-log.ts).
    logController: new LogController({ disableRequestLogging: true }),
  }).withTypeProvider<ZodTypeProvider>();
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(serializerCompiler);
  // Clients such as Nango's Node SDK send `Content-Type: application/json` with no body (its DELETEs): an empty
  // body is no body. A route that needs one still answers 400 naming `body`; anything else is Fastify's own parser.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (req, body, done) => {
    if (body.length === 0) return done(null, undefined);
    void parseJson(req, body as string, done);
  });
  registerErrorHandling(app);
  registerAccessLog(app, deps.logger);
  registerInputGuard(app);
  app.addHook('onRequest', (req, reply, done) => {
    reply.header('x-request-id', req.id);
    done();
  });

  // Maintained plugins for what every route shares: load shedding and rate limits (before any route).
  await registerProtection(app, { config, database, redis: deps.redis });

  const services = deps.services ?? (await createServices(deps));
  if (!deps.services) app.addHook('onClose', async () => services.close());
  const { keyCache, environments, integrations, connections, tokens, sessions, flows } = services;

  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'Terapi API',
        version,
        description:
          'Terapi is a self-hostable embedded integration platform: it runs the OAuth dance for your customers, keeps their tokens fresh, syncs their data and performs actions on their behalf.',
      },
      // Relative: resolved against the URL the document was loaded from, so "Try it out" in /docs
      // works whichever address the server was opened at.
      servers: [{ url: '/', description: 'This Terapi server' }],
      components: {
        securitySchemes: {
          SecretKeyAuth: {
            type: 'apiKey',
            in: 'header',
            name: 'Authorization',
            description: "Secret key from Terapi environment settings. Passed as 'Bearer {secret_key}'",
          },
          AdminKeyAuth: { type: 'http', scheme: 'bearer', description: 'TERAPI_ADMIN_KEY of the server' },
          ConnectSessionAuth: { type: 'http', scheme: 'bearer', description: 'A connect session token (from POST /connect/sessions)' },
        },
      },
      security: [{ SecretKeyAuth: [] }],
    },
    transform: jsonSchemaTransform,
    transformObject: (doc) => tidyOpenApi(jsonSchemaTransformObject(doc)),
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs' });
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());

  await app.register(healthRoutes, { database, redis: services.queues });
  await app.register(connectSessionSelfRoutes, { sessions });
  await app.register(
    async (v1) => {
      v1.addHook('onRoute', asV1Route);
      await v1.register(connectSessionSelfRoutes, { sessions });
    },
    { prefix: '/v1' },
  );
  await app.register(connectPageRoutes, { sessions, flows, serverUrl: config.serverUrl });

  await app.register(async (api) => {
    api.addHook('onRequest', environmentAuth(keyCache));
    for (const family of [terapiFamily, v1Family]) {
      await api.register(integrationRoutes, { integrations, family });
      await api.register(connectionRoutes, { connections, family });
      await api.register(functionRoutes, { functions: services.functions, family });
      await api.register(syncRoutes, { syncs: services.syncs, family });
      await api.register(actionRoutes, { actions: services.actions, family, serverUrl: config.serverUrl });
      await api.register(actionStatusRoutes, { actions: services.actions, family });
    }
    // The rest of the Terapi API has the same paths in both families: mounted again under /v1.
    const sharedPaths = async (scope: typeof api) => {
      await scope.register(providerRoutes, { catalog, integrations });
      await scope.register(runRoutes, { syncs: services.syncs });
      await scope.register(recordRoutes, { records: services.records });
      await scope.register(webhookRoutes, { webhooks: services.webhooks });
      await scope.register(connectSessionRoutes, { sessions });
    };
    await sharedPaths(api);
    await api.register(
      async (v1) => {
        v1.addHook('onRoute', asV1Route);
        await sharedPaths(v1);
      },
      { prefix: '/v1' },
    );
    await api.register(nangoSyncRoutes, { syncs: services.syncs });
    await api.register(nangoIntegrationRoutes, { integrations });
    await api.register(nangoConnectionRoutes, { connections, tokens });
    await api.register(connectionImportRoutes, { connections, maxBytes: config.importBodyLimitBytes });
    await api.register(tokenRoutes, { tokens });
    await api.register(proxyRoutes, { proxy: services.proxy });
  });

  await app.register(async (admin) => {
    admin.addHook('onRequest', adminAuth(config.adminKey, keyCache));
    await admin.register(adminRoutes, { environments });
  });

  return app;
}
