import { z } from 'zod';

/** Auth modes Terapi speaks. OAUTH2_CC is the client-credentials grant (no end-user consent). */
export const authModes = ['OAUTH2', 'OAUTH2_CC', 'API_KEY', 'BASIC'] as const;

export const providerCategories = [
  'accounting',
  'ats',
  'analytics',
  'banking',
  'communication',
  'crm',
  'design',
  'dev-tools',
  'e-commerce',
  'erp',
  'file-storage',
  'hr',
  'knowledge-base',
  'legal',
  'marketing',
  'payments',
  'productivity',
  'scheduling',
  'support',
  'ticketing',
  'video',
  'other',
] as const;

const providerName = z
  .string()
  .regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'lower-case kebab-case')
  .max(64);

/**
 * A URL that may contain `${connectionConfig.<field>}` placeholders (e.g. a Zendesk subdomain or a
 * Salesforce instance URL), filled from the connection's config when the URL is used.
 */
const templatedUrl = z
  .string()
  .max(500)
  .regex(/^(https:\/\/|\$\{connectionConfig\.[a-zA-Z_]+\})/, 'an https URL or a ${connectionConfig.x} template');

/** One field the end user (or the backend) supplies when connecting, e.g. a subdomain. */
export const connectionConfigField = z
  .object({
    title: z.string().min(1).max(100),
    description: z.string().max(500).optional(),
    /** JavaScript regular expression source the value must fully match. */
    pattern: z.string().min(1).max(500),
    example: z.string().max(200),
    optional: z.boolean().optional(),
  })
  .strict();

/** Where and how an API key or basic credential is sent on provider API calls. */
const credentialPlacement = z
  .object({
    in: z.enum(['header', 'query']),
    name: z.string().min(1).max(100),
    /** Value template: `${apiKey}`, `${username}`, `${password}`, `${base64(username:password)}`. */
    value: z.string().min(1).max(200),
  })
  .strict();

const oauthFields = {
  authorization_url: templatedUrl.optional(),
  token_url: templatedUrl.optional(),
  /** Only when refresh goes to a different URL than the token exchange. */
  refresh_url: templatedUrl.optional(),
  scope_separator: z.string().min(1).max(3).optional(),
  default_scopes: z.array(z.string().min(1).max(300)).max(50).optional(),
  pkce: z.boolean().optional(),
  token_request_auth_method: z.enum(['client_secret_post', 'client_secret_basic']).optional(),
  /** Extra query parameters on the authorization URL (e.g. Google's access_type=offline). */
  authorization_params: z.record(z.string(), z.string()).optional(),
  /** Extra body parameters on the token request. */
  token_params: z.record(z.string(), z.string()).optional(),
  /** Fields of the token response to keep as connection config (e.g. Salesforce's instance_url). */
  token_response_metadata: z.array(z.string().min(1).max(100)).max(20).optional(),
  /** Dot path of the object holding the token fields when a provider nests them (e.g. `data`). */
  token_response_root: z
    .string()
    .regex(/^[a-zA-Z_][a-zA-Z0-9_]*(\.[a-zA-Z_][a-zA-Z0-9_]*)*$/)
    .max(100)
    .optional(),
  /** Name of a non-standard lifetime field in seconds (e.g. `expires`), used when `expires_in` is absent. */
  expires_in_field: z
    .string()
    .regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/)
    .max(100)
    .optional(),
  /** Seconds before stated expiry at which Terapi refreshes; default 15 minutes. */
  token_expiration_buffer_seconds: z.number().int().min(0).max(86_400).optional(),
  /** The provider issues a new refresh token on each refresh and invalidates the old one. */
  refresh_token_rotation: z.boolean().optional(),
  /** Refresh tokens die after this many idle days, so Terapi refreshes before then. */
  refresh_token_idle_expiry_days: z.number().int().min(1).max(3650).optional(),
  /**
   * Where a grant is revoked when its connection is deleted (best effort). `rfc7009`: POST
   * `token=<refresh token, else access token>` with the client's credentials (RFC 7009);
   * `bearer`: POST with the access token as `Authorization: Bearer` (Slack, Dropbox, Linear);
   * `github`: DELETE `/applications/{client_id}/token` with the client's basic auth and the access
   * token in a JSON body (`{client_id}` in the URL is filled in): that one token only, not the
   * user's whole authorization of the app, which other connections may share.
   */
  revocation: z
    .object({ url: templatedUrl, style: z.enum(['rfc7009', 'bearer', 'github']) })
    .strict()
    .optional(),
};

export const providerSchema = z
  .object({
    name: providerName,
    display_name: z.string().min(1).max(100),
    auth_mode: z.enum(authModes),
    categories: z.array(z.enum(providerCategories)).min(1).max(5),
    docs: z.url({ protocol: /^https$/ }),
    api_base_url: templatedUrl.optional(),
    /** How provider API calls carry the credential (API_KEY and BASIC). OAUTH2 uses `Authorization: Bearer`. */
    credential_placement: credentialPlacement.optional(),
    /** A cheap authenticated GET used to verify API keys and basic credentials before storing them. */
    verification: z
      .object({ method: z.enum(['GET', 'POST']), path: z.string().startsWith('/').max(300) })
      .strict()
      .optional(),
    connection_config: z.record(z.string().regex(/^[a-zA-Z_][a-zA-Z0-9_]*$/), connectionConfigField).optional(),
    /** Which provider URLs an integration may override (self-hosted editions, regional hosts). */
    overridable_urls: z.array(z.enum(['authorization_url', 'token_url', 'api_base_url', 'revocation_url'])).optional(),
    ...oauthFields,
  })
  .strict()
  .superRefine((p, ctx) => {
    const oauth = p.auth_mode === 'OAUTH2' || p.auth_mode === 'OAUTH2_CC';
    const generic = p.name === 'oauth2' || p.name === 'oauth2-cc';
    if (oauth && !generic && !p.token_url) ctx.addIssue({ code: 'custom', path: ['token_url'], message: 'required for OAuth providers' });
    if (p.auth_mode === 'OAUTH2' && !generic && !p.authorization_url)
      ctx.addIssue({ code: 'custom', path: ['authorization_url'], message: 'required for OAUTH2 providers' });
    if (!oauth && (p.authorization_url || p.token_url || p.default_scopes || p.pkce !== undefined || p.revocation))
      ctx.addIssue({ code: 'custom', path: ['auth_mode'], message: 'OAuth fields on a non-OAuth provider' });
    if ((p.auth_mode === 'API_KEY' || p.auth_mode === 'BASIC') && !p.credential_placement)
      ctx.addIssue({ code: 'custom', path: ['credential_placement'], message: 'required for API_KEY and BASIC providers' });
    if (!generic && !p.api_base_url) ctx.addIssue({ code: 'custom', path: ['api_base_url'], message: 'required' });
    // Every placeholder must name a declared connection-config field (or a token-response field).
    const known = new Set([...Object.keys(p.connection_config ?? {}), ...(p.token_response_metadata ?? [])]);
    for (const key of ['api_base_url', 'authorization_url', 'token_url', 'refresh_url', 'revocation'] as const) {
      for (const m of ((key === 'revocation' ? p.revocation?.url : p[key]) ?? '').matchAll(/\$\{connectionConfig\.([a-zA-Z_]+)\}/g)) {
        if (!known.has(m[1]!)) ctx.addIssue({ code: 'custom', path: [key], message: `unknown placeholder ${m[1]}` });
      }
    }
    for (const [field, def] of Object.entries(p.connection_config ?? {})) {
      try {
        if (!new RegExp(`^(?:${def.pattern})$`).test(def.example))
          ctx.addIssue({ code: 'custom', path: ['connection_config', field, 'example'], message: 'example does not match pattern' });
      } catch {
        ctx.addIssue({ code: 'custom', path: ['connection_config', field, 'pattern'], message: 'invalid regular expression' });
      }
    }
  });

export type Provider = z.infer<typeof providerSchema>;
