import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errors, isoDate, providerConfigKey, providerName } from '../lib/schemas.js';
import { integrationExtras, keyParams, scopesString, urlOverridesOf } from './schemas.js';
import type { IntegrationPatch, IntegrationService, IntegrationView } from './service.js';

const tags = ['Nango-compatible'];

const oauthCredentials = z.object({
  type: z.enum(['OAUTH2', 'OAUTH2_CC', 'oauth2', 'oauth2_cc']).transform((t) => t.toUpperCase()),
  client_id: z.string().min(1).max(1000),
  client_secret: z.string().min(1).max(10_000),
  scopes: scopesString.optional(),
});

const nangoIntegration = z
  .object({
    unique_key: z.string(),
    display_name: z.string(),
    provider: z.string(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
    connection_count: z.int(),
    credentials: z
      .object({ type: z.string(), client_id: z.string().nullable(), has_client_secret: z.boolean(), scopes: z.string() })
      .nullable()
      .describe('The OAuth client; the client secret is never returned'),
    params: z.record(z.string(), z.unknown()),
    secret_names: z.array(z.string()).describe('Names of the stored secrets (values are never returned)'),
    url_overrides: z.record(z.string(), z.string()),
  })
  .meta({ id: 'NangoIntegration' });

function toNango(v: IntegrationView): z.output<typeof nangoIntegration> {
  return {
    unique_key: v.uniqueKey,
    display_name: v.displayName,
    provider: v.provider,
    created_at: isoDate(v.createdAt)!,
    updated_at: isoDate(v.updatedAt)!,
    connection_count: v.connectionCount,
    credentials:
      v.oauthClientId || v.hasOauthClientSecret
        ? { type: 'OAUTH2', client_id: v.oauthClientId, has_client_secret: v.hasOauthClientSecret, scopes: v.oauthScopes.join(',') }
        : null,
    params: v.params,
    secret_names: v.secretNames,
    url_overrides: v.urlOverrides,
  };
}

function credentialsPatch(c: z.output<typeof oauthCredentials> | undefined): IntegrationPatch {
  if (!c) return {};
  return { oauthClientId: c.client_id, oauthClientSecret: c.client_secret, ...(c.scopes ? { oauthScopes: c.scopes } : {}) };
}

/** Nango's `/integrations` API, so backends written against Nango switch by changing the host. */
export const nangoIntegrationRoutes: FastifyPluginAsyncZod<{ integrations: IntegrationService }> = async (app, { integrations: svc }) => {
  app.get('/integrations', {
    schema: {
      operationId: 'nangoListIntegrations',
      tags,
      summary: 'List integrations (Nango-compatible)',
      response: { 200: z.object({ data: z.array(nangoIntegration) }), ...errors(401) },
    },
    handler: async (req) => ({ data: (await svc.list(req.environment.id)).map(toNango) }),
  });

  app.post('/integrations', {
    schema: {
      operationId: 'nangoCreateIntegration',
      tags,
      summary: 'Create an integration (Nango-compatible)',
      body: z.object({
        unique_key: providerConfigKey,
        provider: providerName,
        credentials: oauthCredentials.optional(),
        ...integrationExtras,
      }),
      response: { 200: z.object({ data: nangoIntegration }), ...errors(400, 401, 409, 503) },
    },
    handler: async (req) => {
      const b = req.body;
      const view = await svc.create(req.environment.id, {
        uniqueKey: b.unique_key,
        provider: b.provider,
        displayName: b.display_name,
        params: b.params,
        secrets: b.secrets,
        urlOverrides: urlOverridesOf(b),
        ...credentialsPatch(b.credentials),
      });
      return { data: toNango(view) };
    },
  });

  app.get('/integrations/:provider_config_key', {
    schema: {
      operationId: 'nangoGetIntegration',
      tags,
      summary: 'Get an integration (Nango-compatible)',
      params: keyParams,
      response: { 200: z.object({ data: nangoIntegration }), ...errors(400, 401, 404) },
    },
    handler: async (req) => ({ data: toNango(await svc.get(req.environment.id, req.params.provider_config_key)) }),
  });

  app.patch('/integrations/:provider_config_key', {
    schema: {
      operationId: 'nangoUpdateIntegration',
      tags,
      summary: 'Update an integration (Nango-compatible)',
      description: 'Renames the key, changes the display name, OAuth client, params, secrets (replaced as a whole) or URL overrides.',
      params: keyParams,
      body: z.object({
        unique_key: providerConfigKey.optional(),
        credentials: oauthCredentials.optional(),
        ...integrationExtras,
      }),
      response: { 200: z.object({ data: nangoIntegration }), ...errors(400, 401, 404, 409, 503) },
    },
    handler: async (req) => {
      const b = req.body;
      const overrides = urlOverridesOf(b);
      const patch: IntegrationPatch = {
        ...(b.unique_key !== undefined && { uniqueKey: b.unique_key }),
        ...(b.display_name !== undefined && { displayName: b.display_name }),
        ...(b.params !== undefined && { params: b.params }),
        ...(b.secrets !== undefined && { secrets: b.secrets }),
        ...(Object.keys(overrides).length > 0 && { urlOverrides: overrides }),
        ...credentialsPatch(b.credentials),
      };
      return { data: toNango(await svc.update(req.environment.id, req.params.provider_config_key, patch)) };
    },
  });

  app.delete('/integrations/:provider_config_key', {
    schema: {
      operationId: 'nangoDeleteIntegration',
      tags,
      summary: 'Delete an integration and its connections (Nango-compatible)',
      params: keyParams,
      response: { 200: z.object({ success: z.literal(true) }), ...errors(400, 401, 404) },
    },
    handler: async (req) => {
      await svc.delete(req.environment.id, req.params.provider_config_key);
      return { success: true as const };
    },
  });
};
