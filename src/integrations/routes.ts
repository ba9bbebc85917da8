import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { errors } from '../lib/schemas.js';
import type { ApiFamily } from '../http/families.js';
import {
  createIntegrationBody,
  integration,
  integrationDetail,
  integrationList,
  integrationPatchOf,
  keyParams,
  toIntegration,
  toIntegrationDetail,
  updateIntegrationBody,
  urlOverridesOf,
} from './schemas.js';
import type { IntegrationService } from './service.js';

/** Seed `001` integration routes; mounted at /integration and again at /v1/integrations. */
export const integrationRoutes: FastifyPluginAsyncZod<{ integrations: IntegrationService; family: ApiFamily }> = async (
  app,
  { integrations: svc, family },
) => {
  const base = family.paths.integration;
  const tags = family.tags('Integrations');
  const op = family.operationId;

  app.get(base, {
    schema: {
      operationId: op('listIntegrations'),
      tags,
      summary: 'List Integrations',
      description: 'Returns a list of all configured integrations (provider configurations) in your Terapi environment.',
      response: { 200: integrationList, ...errors(401) },
    },
    handler: async (req) => ({ integrations: (await svc.list(req.environment.id)).map(toIntegration) }),
  });

  app.post(base, {
    schema: {
      operationId: op('createIntegration'),
      tags,
      summary: 'Create Integration',
      description:
        'Creates a new integration configuration with credentials for a third-party provider. The OAuth client secret and `secrets` are encrypted at rest; `params` are stored plain.',
      body: createIntegrationBody,
      response: { 200: integration, ...errors(400, 401, 409, 503) },
    },
    handler: async (req) => {
      const b = req.body;
      const view = await svc.create(req.environment.id, {
        uniqueKey: b.provider_config_key,
        provider: b.provider,
        displayName: b.display_name,
        oauthClientId: b.oauth_client_id,
        oauthClientSecret: b.oauth_client_secret,
        oauthScopes: b.oauth_scopes,
        params: b.params,
        secrets: b.secrets,
        urlOverrides: urlOverridesOf(b),
      });
      return toIntegration(view);
    },
  });

  app.get(`${base}/:provider_config_key`, {
    schema: {
      operationId: op('getIntegration'),
      tags,
      summary: 'Get Integration',
      description:
        'Returns details of a specific integration configuration: its OAuth client ID and scopes, params, URL overrides and the names of its secrets. The client secret and secret values are never returned.',
      params: keyParams,
      response: { 200: integrationDetail, ...errors(400, 401, 404) },
    },
    handler: async (req) => toIntegrationDetail(await svc.get(req.environment.id, req.params.provider_config_key)),
  });

  app.patch(`${base}/:provider_config_key`, {
    schema: {
      operationId: op('updateIntegration'),
      tags,
      summary: 'Update Integration',
      description:
        'Changes the given settings and leaves the others as they are: key, display name, OAuth client ID, secret and scopes, params, secrets (replaced as a whole) and URL overrides. The client secret and secrets are write-only.',
      params: keyParams,
      body: updateIntegrationBody,
      response: { 200: integrationDetail, ...errors(400, 401, 404, 409, 503) },
    },
    handler: async (req) =>
      toIntegrationDetail(await svc.update(req.environment.id, req.params.provider_config_key, integrationPatchOf(req.body))),
  });

  app.delete(`${base}/:provider_config_key`, {
    schema: {
      operationId: op('deleteIntegration'),
      tags,
      summary: 'Delete Integration',
      description: 'Deletes an integration configuration. All associated connections are deleted in the same transaction.',
      params: keyParams,
      response: { 204: z.undefined(), ...errors(400, 401, 404) },
    },
    handler: async (req, reply) => {
      await svc.delete(req.environment.id, req.params.provider_config_key);
      return reply.code(204).send();
    },
  });
};
