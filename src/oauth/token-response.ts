import type { StoredCredentials } from '../connections/credentials.js';
import type { Provider } from '../providers/schema.js';
import type { TokenSet } from './client.js';

/**
 * Provider token responses that break strict OAuth clients, repaired in one place each, before
 * openid-client validates them. `raw` keeps what the provider really sent.
 */
export interface NormalizedTokenBody {
  body: Record<string, unknown>;
  raw: Record<string, unknown>;
}

/** Form-encoded bodies (GitHub without `Accept: application/json`, old Facebook) become JSON. */
function parseBody(text: string, contentType: string): Record<string, unknown> | undefined {
  const trimmed = text.trim();
  if (contentType.includes('json') || trimmed.startsWith('{')) {
    try {
      const parsed: unknown = JSON.parse(trimmed);
      return parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
    } catch {
      return undefined;
    }
  }
  if (
    contentType.includes('x-www-form-urlencoded') ||
    contentType.includes('text/plain') ||
    /^[\w.-]+=[^<]*(&[\w.-]+=[^<]*)*$/.test(trimmed)
  ) {
    const params = new URLSearchParams(trimmed);
    if (![...params.keys()].length) return undefined;
    return Object.fromEntries(params);
  }
  return undefined;
}

function atPath(obj: Record<string, unknown>, path: string): unknown {
  return path.split('.').reduce<unknown>((o, k) => (o && typeof o === 'object' ? (o as Record<string, unknown>)[k] : undefined), obj);
}

/**
 * Returns the repaired body of a successful token response, or undefined when the body is not
 * a token response at all (HTML error pages, empty bodies) so the caller reports a provider error.
 */
export function normalizeTokenBody(
  provider: Pick<Provider, 'token_response_root' | 'expires_in_field'>,
  text: string,
  contentType: string,
): NormalizedTokenBody | undefined {
  const raw = parseBody(text, contentType.toLowerCase());
  if (!raw) return undefined;
  // Error bodies pass through untouched: openid-client turns them into typed errors.
  if (typeof raw.error === 'string' && raw.access_token === undefined) return { body: raw, raw };

  // Tokens nested under a key the catalog names (e.g. `data.access_token`).
  const root = provider.token_response_root ? atPath(raw, provider.token_response_root) : raw;
  const body: Record<string, unknown> = root && typeof root === 'object' ? { ...raw, ...(root as Record<string, unknown>) } : { ...raw };

  // A missing or provider-specific token_type ("bot", "Bearer ", absent) means a bearer token here.
  const tokenType = typeof body.token_type === 'string' ? body.token_type.trim().toLowerCase() : '';
  if (tokenType !== 'bearer' && tokenType !== 'dpop') body.token_type = 'bearer';

  // Lifetimes: strings become numbers; a non-standard field stands in for expires_in.
  if (body.expires_in === undefined && provider.expires_in_field && body[provider.expires_in_field] !== undefined) {
    body.expires_in = body[provider.expires_in_field];
  }
  if (typeof body.expires_in === 'string') {
    const n = Number(body.expires_in);
    if (Number.isFinite(n)) body.expires_in = n;
    else delete body.expires_in;
  }
  if (body.expires_in === null || body.expires_in === 0) delete body.expires_in;
  // Scope lists come back as arrays from some providers; OAuth says a space-separated string.
  if (Array.isArray(body.scope)) body.scope = body.scope.join(' ');
  // We store tokens; we are not an OpenID relying party, so an id_token is kept in `raw` only.
  delete body.id_token;
  return { body, raw };
}

/**
 * The credentials to store from a token response: a code exchange (no previous credentials), a
 * refresh, or a client-credentials renewal. From the previous credentials it keeps what a provider
 * does not repeat: the refresh token (providers that do not rotate omit it), the granted scope, and
 * the client of a client-credentials connection that brought its own.
 */
export function credentialsFromTokens(type: 'OAUTH2' | 'OAUTH2_CC', tokens: TokenSet, previous?: StoredCredentials): StoredCredentials {
  const expiresAt = tokens.expiresAt && { expires_at: tokens.expiresAt.toISOString() };
  if (type === 'OAUTH2_CC') {
    const client = previous?.type === 'OAUTH2_CC' ? previous : undefined;
    return {
      type: 'OAUTH2_CC',
      access_token: tokens.accessToken,
      ...expiresAt,
      ...(client?.client_id && { client_id: client.client_id }),
      ...(client?.client_secret && { client_secret: client.client_secret }),
      raw: tokens.raw,
    };
  }
  const before = previous?.type === 'OAUTH2' ? previous : undefined;
  const refreshToken = tokens.refreshToken ?? before?.refresh_token;
  const scope = tokens.scope ?? before?.scope;
  return {
    type: 'OAUTH2',
    access_token: tokens.accessToken,
    ...(refreshToken && { refresh_token: refreshToken }),
    ...expiresAt,
    token_type: tokens.tokenType,
    ...(scope && { scope }),
    raw: tokens.raw,
  };
}
