import { z } from 'zod';
import type { CredentialsType } from '../db/schema/index.js';
import { ValidationError } from '../lib/errors.js';
import type { Provider } from '../providers/schema.js';

/** Credentials as stored (encrypted) for each auth mode. */
export type StoredCredentials =
  | {
      type: 'OAUTH2';
      access_token: string;
      refresh_token?: string;
      expires_at?: string;
      token_type?: string;
      scope?: string;
      raw: Record<string, unknown>;
    }
  | {
      type: 'OAUTH2_CC';
      access_token?: string;
      expires_at?: string;
      client_id?: string;
      client_secret?: string;
      raw: Record<string, unknown>;
    }
  | { type: 'API_KEY'; api_key: string }
  | { type: 'BASIC'; username: string; password: string };

const token = z.string().min(1).max(20_000);
/** ISO 8601 date-time, or seconds since the epoch as providers and Nango imports send it. */
const instant = z.union([
  z.iso.datetime({ offset: true }).transform((s) => new Date(s)),
  z.iso.date().transform((s) => new Date(`${s}T00:00:00Z`)),
  z
    .number()
    .int()
    .positive()
    .max(1e13)
    .transform((n) => new Date(n < 1e11 ? n * 1000 : n)),
]);
const expiresIn = z
  .number()
  .int()
  .min(0)
  .max(10 * 365 * 86_400);
const raw = z.record(z.string(), z.unknown()).optional();

const oauth2 = z
  .object({
    type: z.string(),
    access_token: token,
    refresh_token: token.optional(),
    expires_at: instant.optional(),
    expires_in: expiresIn.optional(),
    no_expiration: z.boolean().optional(),
    token_type: z.string().max(100).optional(),
    scope: z.string().max(10_000).optional(),
    raw,
  })
  .strict();
const oauth2cc = z
  .object({
    type: z.string(),
    access_token: token.optional(),
    token: token.optional(),
    expires_at: instant.optional(),
    expires_in: expiresIn.optional(),
    client_id: z.string().min(1).max(1000).optional(),
    client_secret: z.string().min(1).max(10_000).optional(),
    raw,
  })
  .strict();
const apiKey = z
  .object({ type: z.string(), api_key: token.optional(), apiKey: token.optional() })
  .strict()
  .refine((c) => c.api_key ?? c.apiKey, { message: 'api_key is required', path: ['api_key'] });
const basic = z.object({ type: z.string(), username: z.string().min(1).max(1000), password: z.string().max(10_000).default('') }).strict();

const typeAliases: Record<string, CredentialsType> = {
  OAUTH2: 'OAUTH2',
  OAUTH2_CC: 'OAUTH2_CC',
  API_KEY: 'API_KEY',
  APIKEY: 'API_KEY',
  BASIC: 'BASIC',
};

export interface NormalizedCredentials {
  stored: StoredCredentials;
  expiresAt: Date | null;
  /** Whether Terapi can obtain a new access token by itself (refresh token or client credentials). */
  refreshable: boolean;
}

/**
 * Validates imported credentials against the provider's auth mode and normalizes them.
 * `type` may be omitted (it is the provider's), and may be given in either case.
 */
export function normalizeCredentials(provider: Provider, input: Record<string, unknown>, now = new Date()): NormalizedCredentials {
  const given = typeof input.type === 'string' ? typeAliases[input.type.toUpperCase()] : undefined;
  if (input.type !== undefined && !given) {
    throw ValidationError.field('credentials.type', 'must be one of OAUTH2, OAUTH2_CC, API_KEY, BASIC');
  }
  if (given && given !== provider.auth_mode) {
    throw ValidationError.field(
      'credentials.type',
      `provider "${provider.name}" authenticates with ${provider.auth_mode} credentials, not ${given}`,
    );
  }
  const withType = { ...input, type: provider.auth_mode };
  const parse = <S extends z.ZodType>(schema: S): z.output<S> => {
    const r = schema.safeParse(withType);
    if (r.success) return r.data;
    const details = r.error.issues.map((i) => ({
      field: ['credentials', ...i.path.map(String)].join('.'),
      message: i.code === 'unrecognized_keys' ? `unexpected field(s) for ${provider.auth_mode}: ${i.keys.join(', ')}` : i.message,
    }));
    throw new ValidationError(`Invalid credentials: ${details.map((d) => `${d.field}: ${d.message}`).join('; ')}`, details);
  };
  const expiry = (c: { expires_at?: Date; expires_in?: number }) =>
    c.expires_at ?? (c.expires_in !== undefined ? new Date(now.getTime() + c.expires_in * 1000) : null);

  const normalized = build();
  for (const field of headerFields(provider, normalized.stored)) {
    const value = (normalized.stored as Record<string, unknown>)[field];
    const why = typeof value === 'string' ? headerUnsafe(value) : undefined;
    if (why) throw ValidationError.field(`credentials.${field}`, why);
  }
  return normalized;

  function build(): NormalizedCredentials {
    switch (provider.auth_mode) {
      case 'OAUTH2': {
        const c = parse(oauth2);
        const expiresAt = c.no_expiration ? null : expiry(c);
        const stored: StoredCredentials = { type: 'OAUTH2', access_token: c.access_token, raw: c.raw ?? {} };
        if (c.refresh_token) stored.refresh_token = c.refresh_token;
        if (expiresAt) stored.expires_at = expiresAt.toISOString();
        if (c.token_type) stored.token_type = c.token_type;
        if (c.scope) stored.scope = c.scope;
        return { stored, expiresAt, refreshable: Boolean(c.refresh_token) };
      }
      case 'OAUTH2_CC': {
        const c = parse(oauth2cc);
        const accessToken = c.access_token ?? c.token;
        const expiresAt = accessToken ? expiry(c) : null;
        const stored: StoredCredentials = { type: 'OAUTH2_CC', raw: c.raw ?? {} };
        if (accessToken) stored.access_token = accessToken;
        if (expiresAt) stored.expires_at = expiresAt.toISOString();
        if (c.client_id) stored.client_id = c.client_id;
        if (c.client_secret) stored.client_secret = c.client_secret;
        return { stored, expiresAt, refreshable: true };
      }
      case 'API_KEY': {
        const c = parse(apiKey);
        return { stored: { type: 'API_KEY', api_key: (c.api_key ?? c.apiKey)! }, expiresAt: null, refreshable: false };
      }
      case 'BASIC': {
        const c = parse(basic);
        return { stored: { type: 'BASIC', username: c.username, password: c.password }, expiresAt: null, refreshable: false };
      }
    }
  }
}

/**
 * Stored credential fields that are sent verbatim in a request header to the provider: the OAuth
 * access token (`Authorization: Bearer`), and whatever the catalog's header template places
 * outside `${base64(…)}` (inside it, any text survives the encoding).
 */
function headerFields(provider: Provider, stored: StoredCredentials): string[] {
  if (stored.type === 'OAUTH2' || stored.type === 'OAUTH2_CC') return ['access_token'];
  const placement = provider.credential_placement;
  if (!placement || placement.in !== 'header') return [];
  const verbatim = placement.value.replace(/\$\{base64\([^)]*\)\}/g, '');
  const fields: Record<string, string> = { apiKey: 'api_key', username: 'username', password: 'password' };
  return [...verbatim.matchAll(/\$\{(apiKey|username|password)\}/g)].map((m) => fields[m[1]!]!);
}

/**
 * Why a value cannot travel in an HTTP header, if it cannot: fetch refuses anything above U+00FF
 * ("Cannot convert argument to a ByteString") and CR, LF or NUL, and trims surrounding spaces.
 * Real tokens and keys are visible ASCII, so anything else is a copy-and-paste accident (an
 * ellipsis "…" from a shortened example, a smart quote, a line break) that would fail every call.
 */
export function headerUnsafe(value: string): string | undefined {
  const at = value.search(/[^\x20-\x7e]/);
  if (at >= 0) {
    const code = value.codePointAt(at)!.toString(16).toUpperCase().padStart(4, '0');
    return `contains a character that cannot be sent in an HTTP header (U+${code} at position ${at + 1}); tokens and keys are visible ASCII`;
  }
  if (value !== value.trim()) return 'has leading or trailing spaces, which an HTTP header cannot carry';
  return undefined;
}

/**
 * Checks the provider's declared connection-config fields (e.g. a Zendesk subdomain), and that
 * every value the API base URL needs is there (e.g. Salesforce's instance_url on an import, which
 * the OAuth flow would otherwise take from the token response). `filledLater` names fields the
 * caller will fill itself.
 */
export function validateConnectionConfig(
  provider: Provider,
  config: Record<string, unknown>,
  opts: { filledLater?: readonly string[]; apiBaseUrl?: string } = {},
): void {
  const filledLater = opts.filledLater ?? [];
  for (const m of (opts.apiBaseUrl ?? '').matchAll(/\$\{connectionConfig\.([a-zA-Z_]+)\}/g)) {
    const field = m[1]!;
    if (provider.connection_config?.[field] || filledLater.includes(field)) continue;
    const value = config[field];
    if (typeof value !== 'string' || !/^https?:\/\/[^\s/]+/.test(value)) {
      throw ValidationError.field(`connection_config.${field}`, `required by ${provider.display_name} API calls (an https URL)`);
    }
  }
  for (const [field, def] of Object.entries(provider.connection_config ?? {})) {
    const value = config[field];
    if (value === undefined || value === null || value === '') {
      if (!def.optional && !filledLater.includes(field)) {
        throw ValidationError.field(
          `connection_config.${field}`,
          `required by ${provider.display_name} (${def.title}, e.g. "${def.example}")`,
        );
      }
      continue;
    }
    if (typeof value !== 'string' || !new RegExp(`^(?:${def.pattern})$`).test(value)) {
      throw ValidationError.field(`connection_config.${field}`, `must match ${def.pattern} (${def.title}, e.g. "${def.example}")`);
    }
  }
}

/** Vault context binding a credentials ciphertext to its connection row. */
export const credentialsContext = (c: { environmentId: string; integrationId: number; connectionId: string }) =>
  `connection.credentials:${c.environmentId}:${c.integrationId}:${c.connectionId}`;
