import * as oidc from 'openid-client';
import type { UrlOverrides } from '../db/schema/index.js';
import type { IntegrationRow } from '../integrations/repository.js';
import { decryptClientSecret } from '../integrations/service.js';
import { errorMessage, ValidationError } from '../lib/errors.js';
import type { Vault } from '../lib/vault.js';
import { EgressDeniedError, EgressError, EgressHostNotFoundError, withRetries } from '../lib/egress.js';
import type { Provider } from '../providers/schema.js';
import { fillTemplate } from '../providers/template.js';
import { normalizeTokenBody } from './token-response.js';

/** Everything needed to talk to one integration's authorization server. */
export interface OAuthContext {
  provider: Provider;
  clientId: string;
  clientSecret: string | undefined;
  authorizationUrl: string | undefined;
  tokenUrl: string;
  refreshUrl: string | undefined;
}

export interface TokenSet {
  accessToken: string;
  refreshToken: string | undefined;
  expiresAt: Date | undefined;
  tokenType: string;
  scope: string | undefined;
  /** The provider's response as sent (including fields such as id_token or instance_url). */
  raw: Record<string, unknown>;
}

/**
 * Why a token request failed. `invalid_grant` means the grant is dead (revoked, expired, rotated
 * away) and the user must re-authorize; `transient` may succeed later (5xx, 429, timeouts, network);
 * `rejected` is any other refusal (bad client credentials, HTML error pages, malformed responses);
 * `misconfigured` means the request was never sent because the integration or the server's
 * settings forbid it (token URL refused by the egress policy, not HTTPS, host that does not
 * exist): nothing changes until the configuration does.
 */
export class OAuthError extends Error {
  constructor(
    readonly kind: 'invalid_grant' | 'rejected' | 'transient' | 'misconfigured',
    message: string,
    readonly providerError?: { status?: number; error?: string; error_description?: string },
  ) {
    super(message);
    this.name = 'OAuthError';
  }
}

const DEAD_GRANT_ERRORS = new Set(['invalid_grant', 'invalid_client', 'unauthorized_client', 'access_denied']);

/** The OAuth endpoints of an integration: integration overrides first, then the catalog. */
export function resolveEndpoints(
  provider: Provider,
  overrides: UrlOverrides,
  connectionConfig: Record<string, unknown>,
): Pick<OAuthContext, 'authorizationUrl' | 'tokenUrl' | 'refreshUrl'> {
  const authorization = overrides.authorization_url ?? provider.authorization_url;
  const token = overrides.token_url ?? provider.token_url;
  if (!token) throw ValidationError.field('token_url', `integration of "${provider.name}" has no token URL`);
  return {
    authorizationUrl: authorization ? fillTemplate(authorization, connectionConfig) : undefined,
    tokenUrl: fillTemplate(token, connectionConfig),
    refreshUrl: provider.refresh_url && !overrides.token_url ? fillTemplate(provider.refresh_url, connectionConfig) : undefined,
  };
}

/**
 * The OAuth context of an integration (client from the integration, or from the connection for
 * client-credentials connections that bring their own). Undefined when no client id is known, so
 * each caller says so in its own terms; a missing connection-config value throws a ValidationError.
 */
export function integrationOAuthContext(
  vault: Vault,
  provider: Provider,
  integration: IntegrationRow,
  connectionConfig: Record<string, unknown>,
  client: { id?: string; secret?: string } = {},
): OAuthContext | undefined {
  const clientId = client.id || integration.oauthClientId;
  if (!clientId) return undefined;
  return {
    provider,
    clientId,
    clientSecret: client.secret || decryptClientSecret(vault, integration),
    ...resolveEndpoints(provider, integration.urlOverrides, connectionConfig),
  };
}

export type OAuthClient = ReturnType<typeof createOAuthClient>;

/**
 * One token request, retries included, must end well within the refresh lease (60 s): at most
 * 3 attempts of 10 s with at most 5 s between them.
 */
const TOKEN_REQUEST_TIMEOUT_MS = 10_000;
const MAX_RETRY_DELAY_MS = 5_000;

/**
 * openid-client configured per integration, with every HTTP request going through the egress
 * client (policy, timeouts, retries honouring Retry-After) and token responses repaired by
 * `normalizeTokenBody` before openid-client validates them.
 */
export function createOAuthClient(deps: { fetch: typeof fetch; allowInsecure: boolean; retries?: number }) {
  const retries = deps.retries ?? 2;

  function configure(ctx: OAuthContext, tokenUrl: string, capture: { raw?: Record<string, unknown> }, idempotent: boolean) {
    const server: oidc.ServerMetadata = {
      issuer: new URL(tokenUrl).origin,
      token_endpoint: tokenUrl,
      ...(ctx.authorizationUrl && { authorization_endpoint: ctx.authorizationUrl }),
    };
    const method = ctx.provider.token_request_auth_method ?? 'client_secret_post';
    const auth = !ctx.clientSecret
      ? oidc.None()
      : method === 'client_secret_basic'
        ? oidc.ClientSecretBasic(ctx.clientSecret)
        : oidc.ClientSecretPost(ctx.clientSecret);
    const config = new oidc.Configuration(server, ctx.clientId, undefined, auth);
    if (deps.allowInsecure && tokenUrl.startsWith('http:')) oidc.allowInsecureRequests(config);
    config[oidc.customFetch] = async (url, options) => {
      const send = () =>
        deps.fetch(url, {
          method: options.method,
          headers: { ...Object.fromEntries(new Headers(options.headers)), accept: 'application/json' },
          body: options.body as RequestInit['body'],
          signal: AbortSignal.timeout(TOKEN_REQUEST_TIMEOUT_MS),
          redirect: 'manual',
        });
      const response = await withRetries(send, { retries, maxDelayMs: MAX_RETRY_DELAY_MS, idempotent });
      const text = await response.text();
      const normalized = normalizeTokenBody(ctx.provider, text, response.headers.get('content-type') ?? '');
      if (!normalized) {
        throw new OAuthError(
          response.status >= 500 || response.status === 429 ? 'transient' : 'rejected',
          `The provider's token endpoint answered ${response.status} with a body that is not a token response`,
          { status: response.status },
        );
      }
      capture.raw = normalized.raw;
      return new Response(JSON.stringify(normalized.body), {
        status: response.status,
        headers: {
          'content-type': 'application/json',
          ...(response.headers.get('www-authenticate') ? { 'www-authenticate': response.headers.get('www-authenticate')! } : {}),
        },
      });
    };
    return config;
  }

  async function grant(
    ctx: OAuthContext,
    tokenUrl: string,
    idempotent: boolean,
    run: (config: oidc.Configuration) => Promise<oidc.TokenEndpointResponse>,
  ): Promise<TokenSet> {
    const capture: { raw?: Record<string, unknown> } = {};
    let response: oidc.TokenEndpointResponse;
    try {
      response = await run(configure(ctx, tokenUrl, capture, idempotent));
    } catch (err) {
      throw classify(err, tokenUrl);
    }
    return {
      accessToken: response.access_token,
      refreshToken: response.refresh_token,
      expiresAt: typeof response.expires_in === 'number' ? new Date(Date.now() + response.expires_in * 1000) : undefined,
      tokenType: response.token_type,
      scope: response.scope,
      raw: capture.raw ?? {},
    };
  }

  return {
    buildAuthorizationUrl(ctx: OAuthContext, params: Record<string, string>): URL {
      if (!ctx.authorizationUrl)
        throw ValidationError.field('authorization_url', `integration of "${ctx.provider.name}" has no authorization URL`);
      return oidc.buildAuthorizationUrl(configure(ctx, ctx.tokenUrl, {}, false), params);
    },

    /**
     * Exchanges an authorization code. Codes are single-use: the request is sent again only when it
     * provably never reached the provider (no connection, or a 429), never after a 5xx or a timeout.
     */
    exchangeCode(ctx: OAuthContext, p: { code: string; state: string; redirectUri: string; codeVerifier: string | undefined }) {
      const callback = new URL(p.redirectUri);
      callback.searchParams.set('code', p.code);
      callback.searchParams.set('state', p.state);
      return grant(ctx, ctx.tokenUrl, false, (config) =>
        oidc.authorizationCodeGrant(
          config,
          callback,
          { expectedState: p.state, ...(p.codeVerifier && { pkceCodeVerifier: p.codeVerifier }) },
          ctx.provider.token_params,
        ),
      );
    },

    refresh(ctx: OAuthContext, refreshToken: string) {
      return grant(ctx, ctx.refreshUrl ?? ctx.tokenUrl, true, (config) => oidc.refreshTokenGrant(config, refreshToken));
    },

    clientCredentials(ctx: OAuthContext, scopes: string[]) {
      const separator = ctx.provider.scope_separator ?? ' ';
      return grant(ctx, ctx.tokenUrl, true, (config) =>
        oidc.clientCredentialsGrant(config, scopes.length ? { scope: scopes.join(separator) } : undefined),
      );
    },
  };
}

// openid-client's codes for requests it refuses to send (oauth4webapi's HTTP_REQUEST_FORBIDDEN and
// REQUEST_PROTOCOL_FORBIDDEN).
const INSECURE_URL_CODES = new Set(['OAUTH_HTTP_REQUEST_FORBIDDEN', 'OAUTH_REQUEST_PROTOCOL_FORBIDDEN']);

/** An error and the errors it wraps (`cause`), outermost first; openid-client wraps what our fetch throws. */
function causeChain(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e != null && chain.length < 10 && !chain.includes(e); e = (e as { cause?: unknown }).cause) chain.push(e);
  return chain;
}

function codeOf(e: unknown): string | undefined {
  const code = (e as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

function originOf(url: string): string {
  try {
    return new URL(url).origin;
  } catch {
    return 'the token URL';
  }
}

/** Turns whatever a token request threw into an OAuthError, looking through wrapped causes. */
function classify(err: unknown, tokenUrl: string): OAuthError {
  const chain = causeChain(err);
  const own = chain.find((e): e is OAuthError => e instanceof OAuthError);
  if (own) return own;
  const body = chain.find((e): e is oidc.ResponseBodyError => e instanceof oidc.ResponseBodyError);
  if (body) {
    const providerError = { status: body.status, error: body.error, error_description: body.error_description };
    const description = body.error_description ? `: ${body.error_description}` : '';
    if (DEAD_GRANT_ERRORS.has(body.error))
      return new OAuthError('invalid_grant', `The provider refused the grant (${body.error}${description})`, providerError);
    if (body.status >= 500 || body.status === 429 || body.error === 'temporarily_unavailable' || body.error === 'server_error') {
      return new OAuthError('transient', `The provider's token endpoint failed (${body.status} ${body.error})`, providerError);
    }
    return new OAuthError('rejected', `The provider rejected the token request (${body.error}${description})`, providerError);
  }
  const denied = chain.find((e): e is EgressDeniedError => e instanceof EgressDeniedError);
  if (denied) {
    return new OAuthError(
      'misconfigured',
      `The token URL is refused by the egress policy (${denied.message}); allow the host with TERAPI_EGRESS_ALLOWED_HOSTS, or private networks with TERAPI_EGRESS_ALLOW_PRIVATE`,
    );
  }
  const unknownHost = chain.find((e): e is EgressHostNotFoundError => e instanceof EgressHostNotFoundError);
  if (unknownHost) return new OAuthError('misconfigured', `The token URL cannot be reached: ${unknownHost.message}`);
  if (chain.some((e) => INSECURE_URL_CODES.has(codeOf(e) ?? ''))) {
    return new OAuthError(
      'misconfigured',
      `The token URL ${originOf(tokenUrl)} is not HTTPS: tokens are only requested over HTTPS (plain HTTP is allowed only with TERAPI_EGRESS_ALLOW_PRIVATE)`,
    );
  }
  if (chain.some((e) => codeOf(e) === 'ERR_INVALID_URL')) return new OAuthError('misconfigured', 'The token URL is not a valid URL');
  const invalid = chain.find((e) => codeOf(e) === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || codeOf(e) === 'OAUTH_INVALID_RESPONSE');
  if (invalid) {
    const status = (invalid as { cause?: { status?: number } }).cause?.status;
    return new OAuthError(
      status && status >= 500 ? 'transient' : 'rejected',
      `The provider sent an invalid token response (${errorMessage(invalid)})`,
    );
  }
  // Network failures, timeouts, aborted requests: the egress error says what happened, not its wrapper.
  const cause = chain.find((e): e is EgressError => e instanceof EgressError) ?? chain.at(-1);
  return new OAuthError(
    'transient',
    `Could not reach the provider's token endpoint (${cause instanceof Error ? cause.message : 'network error'})`,
  );
}
