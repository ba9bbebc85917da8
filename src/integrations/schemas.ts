import { z } from 'zod';
import { isoDate, jsonObject, providerConfigKey, providerName } from '../lib/schemas.js';
import type { IntegrationInput, IntegrationPatch, IntegrationView } from './service.js';

const secretName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,63}$/, 'secret names are letters, digits and _ (max 64)');
const providerUrl = z.url({ protocol: /^https?$/ }).max(2000);

/** Comma-separated scopes, as in the Terapi API and Nango's credentials object. */
export const scopesString = z
  .string()
  .max(10_000)
  .transform((s) =>
    s
      .split(',')
      .map((x) => x.trim())
      .filter(Boolean),
  )
  .pipe(z.array(z.string().max(300).regex(/^\S+$/, 'a scope has no spaces')).max(200));

/** Fields Terapi accepts on both create shapes beyond the OAuth client. */
export const integrationExtras = {
  display_name: z.string().min(1).max(100).optional().describe("Name shown to end users (defaults to the provider's)"),
  params: jsonObject.optional().describe('Plain configuration values (e.g. api_version, region)'),
  secrets: z.record(secretName, z.string().max(10_000)).optional().describe('Secret values, encrypted at rest and never returned'),
  authorization_url: providerUrl.optional().describe('Override, for the generic oauth2 provider and self-hosted editions'),
  token_url: providerUrl.optional().describe('Override, for the generic oauth2 providers and self-hosted editions'),
  api_base_url: providerUrl.optional().describe('Override, for generic providers and self-hosted editions (e.g. GitHub Enterprise)'),
  revocation_url: providerUrl
    .optional()
    .describe('RFC 7009 revocation endpoint, for the generic oauth2 provider: grants are revoked there when a connection is deleted'),
};

export const createIntegrationBody = z
  .object({
    provider_config_key: providerConfigKey,
    provider: providerName.describe("The provider name from Terapi's supported providers list"),
    oauth_client_id: z.string().min(1).max(1000).optional().describe('OAuth client ID for OAuth2 providers'),
    oauth_client_secret: z.string().min(1).max(10_000).optional().describe('OAuth client secret for OAuth2 providers'),
    oauth_scopes: scopesString.optional().describe('Comma-separated list of OAuth scopes to request'),
    ...integrationExtras,
  })
  .strict()
  .meta({ id: 'CreateIntegrationRequest' });

export const integration = z
  .object({
    unique_key: z.string().describe('Your unique key for this integration configuration'),
    provider: z.string().describe('The provider name (e.g., github, salesforce, slack)'),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
    connection_count: z.int().describe('Number of active connections using this integration'),
  })
  .meta({ id: 'Integration' });

export const integrationList = z.object({ integrations: z.array(integration) }).meta({ id: 'IntegrationListResponse' });

export const keyParams = z.object({ provider_config_key: providerConfigKey });

export function toIntegration(v: IntegrationView): z.output<typeof integration> {
  return {
    unique_key: v.uniqueKey,
    provider: v.provider,
    created_at: isoDate(v.createdAt)!,
    updated_at: isoDate(v.updatedAt)!,
    connection_count: v.connectionCount,
  };
}

/** Maps the URL override fields of a request body. */
export function urlOverridesOf(body: { authorization_url?: string; token_url?: string; api_base_url?: string; revocation_url?: string }) {
  const out: IntegrationInput['urlOverrides'] = {};
  if (body.authorization_url) out.authorization_url = body.authorization_url;
  if (body.token_url) out.token_url = body.token_url;
  if (body.api_base_url) out.api_base_url = body.api_base_url;
  if (body.revocation_url) out.revocation_url = body.revocation_url;
  return out;
}

/** One integration with its settings, as `GET /integration/{key}` shows it: never a secret value. */
export const integrationDetail = integration
  .extend({
    display_name: z.string().describe('Name shown to end users'),
    oauth_client_id: z.string().nullable().describe('OAuth client ID'),
    has_oauth_client_secret: z.boolean().describe('Whether an OAuth client secret is stored (it is never returned)'),
    oauth_scopes: z.string().describe('Comma-separated OAuth scopes requested'),
    params: z.record(z.string(), z.unknown()).describe('Plain configuration values'),
    secret_names: z.array(z.string()).describe('Names of the stored secrets (values are never returned)'),
    url_overrides: z.record(z.string(), z.string()).describe('Provider URL overrides'),
  })
  .meta({ id: 'IntegrationDetail' });

export function toIntegrationDetail(v: IntegrationView): z.output<typeof integrationDetail> {
  return {
    ...toIntegration(v),
    display_name: v.displayName,
    oauth_client_id: v.oauthClientId,
    has_oauth_client_secret: v.hasOauthClientSecret,
    oauth_scopes: v.oauthScopes.join(','),
    params: v.params,
    secret_names: v.secretNames,
    url_overrides: v.urlOverrides,
  };
}

export const updateIntegrationBody = z
  .object({
    provider_config_key: providerConfigKey.optional().describe('A new key for the integration (renames it)'),
    oauth_client_id: z.string().min(1).max(1000).optional().describe('OAuth client ID'),
    oauth_client_secret: z.string().min(1).max(10_000).optional().describe('OAuth client secret (write-only)'),
    oauth_scopes: scopesString.optional().describe('Comma-separated list of OAuth scopes to request'),
    ...integrationExtras,
  })
  .strict()
  .meta({ id: 'UpdateIntegrationRequest' });

/** The fields a PATCH body sets; absent fields stay as they are. */
export function integrationPatchOf(b: z.output<typeof updateIntegrationBody>): IntegrationPatch {
  const overrides = urlOverridesOf(b);
  return {
    ...(b.provider_config_key !== undefined && { uniqueKey: b.provider_config_key }),
    ...(b.display_name !== undefined && { displayName: b.display_name }),
    ...(b.oauth_client_id !== undefined && { oauthClientId: b.oauth_client_id }),
    ...(b.oauth_client_secret !== undefined && { oauthClientSecret: b.oauth_client_secret }),
    ...(b.oauth_scopes !== undefined && { oauthScopes: b.oauth_scopes }),
    ...(b.params !== undefined && { params: b.params }),
    ...(b.secrets !== undefined && { secrets: b.secrets }),
    ...(Object.keys(overrides).length > 0 && { urlOverrides: overrides }),
  };
}
