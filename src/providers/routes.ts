import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { IntegrationService } from '../integrations/service.js';
import { NotFoundError } from '../lib/errors.js';
import { errors, providerName } from '../lib/schemas.js';
import type { Catalog } from './catalog.js';
import { authModes, type Provider, providerCategories } from './schema.js';

const tags = ['Providers'];

const providerSummary = z
  .object({
    name: z.string(),
    display_name: z.string(),
    auth_mode: z.enum(authModes),
    categories: z.array(z.string()),
    docs: z.string(),
    installed: z.boolean().describe('Whether this environment has an integration of this provider'),
  })
  .meta({ id: 'ProviderSummary' });

const providerDetail = providerSummary
  .extend({
    api_base_url: z.string().optional(),
    authorization_url: z.string().optional(),
    token_url: z.string().optional(),
    refresh_url: z.string().optional(),
    scope_separator: z.string(),
    default_scopes: z.array(z.string()),
    pkce: z.boolean(),
    token_request_auth_method: z.string().optional(),
    authorization_params: z.record(z.string(), z.string()).optional(),
    token_params: z.record(z.string(), z.string()).optional(),
    token_response_metadata: z.array(z.string()).optional(),
    credential_placement: z.object({ in: z.string(), name: z.string(), value: z.string() }).optional(),
    verification: z.object({ method: z.string(), path: z.string() }).optional(),
    connection_config: z
      .record(
        z.string(),
        z.object({
          title: z.string(),
          description: z.string().optional(),
          pattern: z.string(),
          example: z.string(),
          optional: z.boolean().optional(),
        }),
      )
      .optional(),
    overridable_urls: z.array(z.string()).optional(),
    refresh_token_rotation: z.boolean().optional(),
    refresh_token_idle_expiry_days: z.number().optional(),
    token_expiration_buffer_seconds: z.number().optional(),
  })
  .meta({ id: 'Provider' });

const isOAuth = (p: Provider) => p.auth_mode === 'OAUTH2' || p.auth_mode === 'OAUTH2_CC';

function toSummary(p: Provider, installed: boolean): z.output<typeof providerSummary> {
  return { name: p.name, display_name: p.display_name, auth_mode: p.auth_mode, categories: [...p.categories], docs: p.docs, installed };
}

function toDetail(p: Provider, installed: boolean): z.output<typeof providerDetail> {
  const { name, display_name, auth_mode, categories, docs, ...facts } = p;
  return {
    ...facts,
    ...toSummary(p, installed),
    scope_separator: p.scope_separator ?? ' ',
    default_scopes: [...(p.default_scopes ?? [])],
    pkce: isOAuth(p) ? (p.pkce ?? false) : false,
  };
}

/** The provider catalog: what Terapi knows how to authenticate with, with per-category counts. */
export const providerRoutes: FastifyPluginAsyncZod<{ catalog: Catalog; integrations: IntegrationService }> = async (
  app,
  { catalog, integrations },
) => {
  app.get('/providers', {
    schema: {
      operationId: 'listProviders',
      tags,
      summary: 'List providers',
      description:
        'The provider catalog, filtered by category, auth mode, install status and a name search. `categories` counts the providers per category among those matching every filter except `category`.',
      querystring: z.object({
        category: z.enum(providerCategories).optional(),
        auth_mode: z.enum(authModes).optional(),
        status: z.enum(['available', 'installed']).optional().describe('installed: providers this environment has an integration for'),
        search: z.string().max(100).optional().describe('Case-insensitive match on name or display name'),
      }),
      response: {
        200: z.object({
          data: z.array(providerSummary),
          total: z.int(),
          categories: z.array(z.object({ category: z.string(), count: z.int() })),
        }),
        ...errors(400, 401),
      },
    },
    handler: async (req) => {
      const { category, auth_mode, status, search } = req.query;
      const installed = new Set(await integrations.installedProviders(req.environment.id));
      const needle = search?.trim().toLowerCase();
      const facetMatches = catalog
        .list()
        .filter(
          (p) =>
            (!auth_mode || p.auth_mode === auth_mode) &&
            (!status || installed.has(p.name) === (status === 'installed')) &&
            (!needle || p.name.includes(needle) || p.display_name.toLowerCase().includes(needle)),
        );
      const counts = new Map<string, number>();
      for (const p of facetMatches) for (const c of p.categories) counts.set(c, (counts.get(c) ?? 0) + 1);
      const data = facetMatches.filter((p) => !category || p.categories.includes(category)).map((p) => toSummary(p, installed.has(p.name)));
      return {
        data,
        total: data.length,
        categories: [...counts].sort(([a], [b]) => a.localeCompare(b)).map(([c, count]) => ({ category: c, count })),
      };
    },
  });

  app.get('/providers/:name', {
    schema: {
      operationId: 'getProvider',
      tags,
      summary: 'Get a provider',
      params: z.object({ name: providerName }),
      response: { 200: z.object({ data: providerDetail }), ...errors(400, 401, 404) },
    },
    handler: async (req) => {
      const provider = catalog.get(req.params.name);
      if (!provider) throw new NotFoundError(`Provider "${req.params.name}" is not in the catalog`);
      const installed = (await integrations.installedProviders(req.environment.id)).includes(provider.name);
      return { data: toDetail(provider, installed) };
    },
  });
};
