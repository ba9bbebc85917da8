import { randomBytes, randomUUID } from 'node:crypto';
import { sha256 } from '../lib/hash.js';
import * as oidc from 'openid-client';
import type { ConnectSession, ConnectSessionService } from '../connect/service.js';
import { verifyCredentials } from '../providers/verify.js';
import { normalizeCredentials, validateConnectionConfig } from '../connections/credentials.js';
import type { ConnectionService, ConnectionView } from '../connections/service.js';
import type { Db } from '../db/client.js';
import type { IntegrationDefaults } from '../db/schema/index.js';
import type { IntegrationRow } from '../integrations/repository.js';
import type { IntegrationLookup } from '../integrations/service.js';
import { AppError, errorCode, errorMessage, firstInvalidField } from '../lib/errors.js';
import type { Vault } from '../lib/vault.js';
import type { Catalog } from '../providers/catalog.js';
import { genericProviders } from '../providers/catalog.js';
import type { Provider } from '../providers/schema.js';
import { integrationOAuthContext, type OAuthClient, type OAuthContext, OAuthError } from './client.js';
import * as repo from './repository.js';
import { credentialsFromTokens } from './token-response.js';

/** Why an authorization flow stopped; the Connect page shows each as a clear error screen. */
export class FlowError extends Error {
  constructor(
    readonly kind:
      'expired' | 'denied' | 'not_allowed' | 'not_configured' | 'invalid_input' | 'invalid_credentials' | 'provider_error' | 'internal',
    message: string,
    readonly field?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = 'FlowError';
  }

  /** The connect session the flow belonged to, when known (the error page reports to its opener). */
  session?: ConnectSession;
}

export interface FlowResult {
  connection: ConnectionView;
  created: boolean;
  session: ConnectSession | undefined;
  /** How the Connect page names the integration (its display name, else the provider's). */
  integrationName: string;
}

const OAUTH_SESSION_TTL_MS = 10 * 60_000;
const hashState = (state: string) => sha256(state, 'hex');

export type AuthFlows = ReturnType<typeof createAuthFlows>;

/** The end-user authorization flows behind the Connect page and `/oauth/*`. */
export function createAuthFlows(deps: {
  db: Db;
  vault: Vault;
  catalog: Catalog;
  oauth: OAuthClient;
  connections: ConnectionService;
  integrations: Pick<IntegrationLookup, 'find' | 'findById'>;
  sessions: Pick<ConnectSessionService, 'findById' | 'deleteExpired'>;
  fetch: typeof fetch;
  serverUrl: string;
}) {
  const { db, vault, catalog, oauth, connections } = deps;
  const redirectUri = `${deps.serverUrl}/oauth/callback`;

  /** The integration a session may use, with its provider; FlowError when it may not. */
  async function allowedIntegration(session: ConnectSession, key: string): Promise<{ integration: IntegrationRow; provider: Provider }> {
    if (session.allowedIntegrations && !session.allowedIntegrations.includes(key)) {
      throw new FlowError('not_allowed', `This link does not allow connecting "${key}".`);
    }
    const integration = await deps.integrations.find(session.environmentId, key);
    const provider = integration && catalog.get(integration.provider);
    if (!integration || !provider) throw new FlowError('not_allowed', `There is no integration "${key}".`);
    return { integration, provider };
  }

  async function targetConnectionId(session: ConnectSession): Promise<string> {
    if (!session.reconnectConnectionId) return randomUUID();
    const [existing] = await connections.lookup.findById([session.reconnectConnectionId]);
    if (!existing) throw new FlowError('expired', 'The connection to re-authorize no longer exists.');
    return existing.connectionId;
  }

  const defaultsOf = (session: ConnectSession, key: string): IntegrationDefaults => session.integrationsConfigDefaults[key] ?? {};

  /** Session defaults first, then what the user typed; checked against the catalog's patterns. */
  function connectionConfigFor(
    session: ConnectSession,
    key: string,
    provider: Provider,
    typed: Record<string, string>,
    filledLater: string[],
  ) {
    const config: Record<string, unknown> = { ...defaultsOf(session, key).connection_config };
    for (const field of Object.keys(provider.connection_config ?? {})) {
      const value = typed[field]?.trim();
      if (value) config[field] = value;
    }
    try {
      validateConnectionConfig(provider, config, { filledLater });
    } catch (err) {
      const field = firstInvalidField(err)?.field;
      throw new FlowError('invalid_input', errorMessage(err), field?.replace(/^connection_config\./, ''));
    }
    return config;
  }

  function oauthContext(
    integration: IntegrationRow,
    provider: Provider,
    connectionConfig: Record<string, unknown>,
    client: { id?: string; secret?: string } = {},
  ): OAuthContext {
    let ctx: OAuthContext | undefined;
    try {
      ctx = integrationOAuthContext(vault, provider, integration, connectionConfig, client);
    } catch (err) {
      if (err instanceof AppError && err.statusCode === 400) throw new FlowError('not_configured', err.message);
      throw err;
    }
    if (!ctx) throw new FlowError('not_configured', `The "${integration.uniqueKey}" integration has no OAuth client configured yet.`);
    return ctx;
  }

  const integrationName = (i: Pick<IntegrationRow, 'displayName' | 'provider'>) =>
    i.displayName ?? catalog.get(i.provider)?.display_name ?? i.provider;

  return {
    /** Housekeeping: OAuth attempts and connect sessions past their expiry. */
    async deleteExpired(): Promise<void> {
      await repo.deleteExpiredOAuthSessions(db);
      await deps.sessions.deleteExpired();
    },

    allowedIntegration,
    integrationName,
    authModeOf: (name: string) => catalog.get(name)?.auth_mode ?? 'OAUTH2',

    /**
     * Whether an end user can complete this integration on the Connect page: its provider is in the
     * catalog and, for the authorization-code flow, it has an OAuth client (client-credentials
     * integrations let the user type their own).
     */
    isUsable(i: Pick<IntegrationRow, 'provider' | 'oauthClientId'>): boolean {
      const provider = catalog.get(i.provider);
      return Boolean(provider) && (provider!.auth_mode !== 'OAUTH2' || Boolean(i.oauthClientId));
    },

    /** Fields the user must type before the flow can start (connection config not given by defaults). */
    missingConfigFields(session: ConnectSession, key: string, provider: Provider): string[] {
      const given = defaultsOf(session, key).connection_config ?? {};
      const filledLater = provider.token_response_metadata ?? [];
      return Object.entries(provider.connection_config ?? {})
        .filter(([field]) => !filledLater.includes(field) && (given[field] === undefined || given[field] === ''))
        .map(([field]) => field);
    },

    /** Starts the authorization-code flow: stores the OAuth session, returns the provider URL. */
    async startOAuth(session: ConnectSession, key: string, typed: Record<string, string>): Promise<URL> {
      const { integration, provider } = await allowedIntegration(session, key);
      if (provider.auth_mode !== 'OAUTH2') throw new FlowError('invalid_input', `"${key}" does not use OAuth.`);
      const connectionConfig = connectionConfigFor(session, key, provider, typed, provider.token_response_metadata ?? []);
      const ctx = oauthContext(integration, provider, connectionConfig);
      const defaults = defaultsOf(session, key);
      const scopes = defaults.user_scopes
        ? defaults.user_scopes
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : integration.oauthScopes.length
          ? integration.oauthScopes
          : (provider.default_scopes ?? []);
      const state = randomBytes(32).toString('base64url');
      // PKCE unless the catalog says the provider cannot do it; generic servers get it (RFC 9700).
      const usePkce = provider.pkce ?? genericProviders.has(provider.name);
      const verifier = usePkce ? oidc.randomPKCECodeVerifier() : undefined;
      const params: Record<string, string> = {
        redirect_uri: redirectUri,
        response_type: 'code',
        state,
        ...provider.authorization_params,
        ...defaults.authorization_params,
      };
      if (scopes.length) params.scope = scopes.join(provider.scope_separator ?? ' ');
      if (verifier) {
        params.code_challenge = await oidc.calculatePKCECodeChallenge(verifier);
        params.code_challenge_method = 'S256';
      }
      let url: URL;
      try {
        url = oauth.buildAuthorizationUrl(ctx, params);
      } catch (err) {
        // openid-client's code for a plain-http endpoint under the production egress policy.
        if (errorCode(err) === 'OAUTH_HTTP_REQUEST_FORBIDDEN') {
          throw new FlowError(
            'not_configured',
            `The "${key}" integration's authorization server does not use https, so it cannot be used.`,
          );
        }
        throw err;
      }
      await repo.insertOAuthSession(db, {
        environmentId: session.environmentId,
        integrationId: integration.id,
        connectSessionId: session.id,
        stateHash: hashState(state),
        codeVerifierEnc: verifier ? vault.encrypt(verifier, `oauth.verifier:${session.environmentId}`) : null,
        connectionId: await targetConnectionId(session),
        connectionConfig,
        redirectUri,
        expiresAt: new Date(Date.now() + OAUTH_SESSION_TTL_MS),
      });
      return url;
    },

    /** Completes the flow at the callback: one use of `state`, code exchange, connection stored. */
    async finishOAuth(query: { state?: string; code?: string; error?: string; error_description?: string }): Promise<FlowResult> {
      if (!query.state) throw new FlowError('expired', 'This authorization response has no state; start again from the Connect page.');
      const oauthSession = await repo.consumeOAuthSession(db, hashState(query.state));
      if (!oauthSession)
        throw new FlowError('expired', 'This authorization attempt has expired or was already used; start again from the Connect page.');
      const session = oauthSession.connectSessionId ? await deps.sessions.findById(oauthSession.connectSessionId) : undefined;
      try {
        if (query.error) {
          if (query.error === 'access_denied')
            throw new FlowError('denied', 'You declined the authorization request, so nothing was connected.');
          throw new FlowError(
            'provider_error',
            `The provider reported an error: ${query.error}${query.error_description ? ` (${query.error_description})` : ''}`,
          );
        }
        if (!query.code) throw new FlowError('provider_error', 'The provider sent no authorization code.');
        const integration = await deps.integrations.findById(oauthSession.environmentId, oauthSession.integrationId);
        if (!integration) throw new FlowError('expired', 'The integration was deleted during the authorization.');
        const provider = catalog.get(integration.provider)!;
        const ctx = oauthContext(integration, provider, oauthSession.connectionConfig);
        let tokens;
        try {
          tokens = await oauth.exchangeCode(ctx, {
            code: query.code,
            state: query.state,
            redirectUri: oauthSession.redirectUri,
            codeVerifier: oauthSession.codeVerifierEnc
              ? vault.decrypt(oauthSession.codeVerifierEnc, `oauth.verifier:${oauthSession.environmentId}`)
              : undefined,
          });
        } catch (err) {
          const e = err instanceof OAuthError ? err : new OAuthError('transient', errorMessage(err));
          throw new FlowError('provider_error', `${provider.display_name} did not complete the authorization: ${e.message}`);
        }
        const stored = credentialsFromTokens('OAUTH2', tokens);
        const fromResponse = Object.fromEntries(
          (provider.token_response_metadata ?? []).filter((f) => typeof tokens.raw[f] === 'string').map((f) => [f, tokens.raw[f]]),
        );
        const endUser = session?.endUser ?? { id: oauthSession.connectionId };
        const saved = await connections.saveAuthorized({
          environmentId: oauthSession.environmentId,
          integrationId: integration.id,
          providerConfigKey: integration.uniqueKey,
          provider: provider.name,
          connectionId: oauthSession.connectionId,
          stored,
          expiresAt: tokens.expiresAt ?? null,
          refreshable: Boolean(tokens.refreshToken),
          connectionConfig: { ...oauthSession.connectionConfig, ...fromResponse },
          endUser,
          tags: { ...session?.endUser.tags, ...session?.tags },
        });
        return { ...saved, session, integrationName: integrationName(integration) };
      } catch (err) {
        // The error page reports to the session's opener, whatever went wrong.
        const flowError =
          err instanceof FlowError
            ? err
            : new FlowError('internal', 'Terapi could not complete this connection; try again later.', undefined, { cause: err });
        flowError.session = session;
        throw flowError;
      }
    },

    /** API key, basic and client-credentials connections from the Connect page form. */
    async connectWithCredentials(session: ConnectSession, key: string, typed: Record<string, string>): Promise<FlowResult> {
      const { integration, provider } = await allowedIntegration(session, key);
      const connectionConfig = connectionConfigFor(session, key, provider, typed, []);
      const input: Record<string, unknown> =
        provider.auth_mode === 'API_KEY'
          ? { api_key: typed.api_key ?? '' }
          : provider.auth_mode === 'BASIC'
            ? { username: typed.username ?? '', password: typed.password ?? '' }
            : provider.auth_mode === 'OAUTH2_CC'
              ? { client_id: typed.client_id || undefined, client_secret: typed.client_secret || undefined }
              : {};
      for (const [k, v] of Object.entries(input))
        if (v === '' || v === undefined) {
          if (k !== 'password') throw new FlowError('invalid_input', `Please fill in ${k.replace('_', ' ')}.`, k);
        }
      let normalized;
      try {
        normalized = normalizeCredentials(provider, input);
      } catch (err) {
        const field = firstInvalidField(err)?.field;
        throw new FlowError('invalid_input', errorMessage(err), field?.replace(/^credentials\./, ''));
      }
      let stored = normalized.stored;
      if (provider.auth_mode === 'OAUTH2_CC') {
        // Obtaining the first token is the verification.
        try {
          const ctx = oauthContext(integration, provider, connectionConfig, { id: typed.client_id, secret: typed.client_secret });
          const tokens = await oauth.clientCredentials(ctx, provider.default_scopes ?? []);
          stored = credentialsFromTokens('OAUTH2_CC', tokens, stored);
        } catch (err) {
          if (err instanceof FlowError) throw err;
          if (err instanceof OAuthError && (err.kind === 'invalid_grant' || err.kind === 'rejected'))
            throw new FlowError('invalid_credentials', 'The provider rejected these client credentials.');
          throw new FlowError('provider_error', `${provider.display_name} could not be reached to check these credentials; try again.`);
        }
      } else {
        const check = await verifyCredentials(deps.fetch, provider, integration.urlOverrides, connectionConfig, stored);
        if (!check.ok && check.reason === 'invalid') {
          throw new FlowError(
            'invalid_credentials',
            provider.auth_mode === 'API_KEY'
              ? 'Invalid API key: the provider rejected it.'
              : 'Invalid username or password: the provider rejected them.',
          );
        }
        if (!check.ok)
          throw new FlowError(
            'provider_error',
            `${provider.display_name} could not be reached to check these credentials (${check.status ?? 'network error'}); try again.`,
          );
      }
      const expiresAt = 'expires_at' in stored && stored.expires_at ? new Date(stored.expires_at) : null;
      const saved = await connections.saveAuthorized({
        environmentId: session.environmentId,
        integrationId: integration.id,
        providerConfigKey: integration.uniqueKey,
        provider: provider.name,
        connectionId: await targetConnectionId(session),
        stored,
        expiresAt,
        refreshable: stored.type === 'OAUTH2_CC',
        connectionConfig,
        endUser: session.endUser,
        tags: { ...session.endUser.tags, ...session.tags },
      });
      return { ...saved, session, integrationName: integrationName(integration) };
    },
  };
}
