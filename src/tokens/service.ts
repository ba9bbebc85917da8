import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Db } from '../db/client.js';
import { type NotificationHub, notifyChange } from '../db/notifications.js';
import type { ConnectionError } from '../db/schema/index.js';
import { credentialsContext, type StoredCredentials } from '../connections/credentials.js';
import type { ConnectionReader } from '../connections/reader.js';
import type { ConnectionWithIntegration } from '../connections/repository.js';
import type { ConnectionLookup } from '../connections/service.js';
import { recordEvent } from '../events/repository.js';
import type { IntegrationLookup } from '../integrations/service.js';
import { AppError, FailedDependencyError, NotFoundError, ServiceUnavailableError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Vault } from '../lib/vault.js';
import { integrationOAuthContext, type OAuthClient, type OAuthContext, OAuthError, type TokenSet } from '../oauth/client.js';
import { credentialsFromTokens } from '../oauth/token-response.js';
import type { Catalog } from '../providers/catalog.js';
import type { Provider } from '../providers/schema.js';
import {
  asOAuthError,
  blockedBy,
  MAX_BACKOFF_MS,
  MISCONFIGURED,
  MISCONFIGURED_RETRY_MS,
  misconfigured,
  needsReauth,
  unexpired,
  unusable,
} from './failures.js';
import * as repo from './repository.js';

export interface TokenResult {
  connection: ConnectionWithIntegration;
  credentials: StoredCredentials;
}

export type TokenService = ReturnType<typeof createTokenService>;

// Longer than the worst case of one token request with its retries (see oauth/client.ts).
const LEASE_MS = 60_000;
const POLL_MS = 250;

/**
 * Hands out always-fresh credentials. Refreshes happen at most once at a time per connection
 * across every process (a lease row in Postgres, see `acquireRefreshLease`), concurrent callers in
 * one process share one promise, and callers elsewhere wait for the lease holder's result.
 */
export function createTokenService(deps: {
  db: Db;
  vault: Vault;
  catalog: Catalog;
  oauth: OAuthClient;
  hub: NotificationHub;
  log: Logger;
  marginSeconds: number;
  reader: ConnectionReader;
  connections: Pick<ConnectionLookup, 'find' | 'findById'>;
  integrations: Pick<IntegrationLookup, 'findById'>;
}) {
  const { db, vault, catalog, oauth, hub, log, reader } = deps;
  const owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const inflight = new Map<number, Promise<StoredCredentials>>();

  const decrypt = (c: Pick<ConnectionWithIntegration, 'environmentId' | 'integrationId' | 'connectionId'>, enc: string | null) =>
    enc ? vault.decryptJson<StoredCredentials>(enc, credentialsContext(c)) : undefined;

  const providerOf = (c: ConnectionWithIntegration): Provider => {
    const p = catalog.get(c.provider);
    if (!p) throw new Error(`provider ${c.provider} is not in the catalog`);
    return p;
  };

  /**
   * The instant (ms) from which the credentials must be refreshed: the margin before expiry, never
   * more than half their lifetime. `-Infinity` for an OAuth connection without an access token,
   * `Infinity` for credentials that never need one; NaN (never stale) for an unparsable expiry.
   */
  function staleAt(c: ConnectionWithIntegration, creds: StoredCredentials): number {
    if (creds.type !== 'OAUTH2' && creds.type !== 'OAUTH2_CC') return Infinity;
    if (!creds.access_token) return -Infinity;
    if (!creds.expires_at) return Infinity;
    const expires = Date.parse(creds.expires_at);
    const issued = (c.lastRefreshedAt ?? c.updatedAt).getTime();
    const configured = (providerOf(c).token_expiration_buffer_seconds ?? deps.marginSeconds) * 1000;
    const margin = expires > issued ? Math.min(configured, (expires - issued) / 2) : configured;
    return expires - margin;
  }

  async function oauthContext(c: ConnectionWithIntegration, creds: StoredCredentials): Promise<OAuthContext> {
    const integration = await deps.integrations.findById(c.environmentId, c.integrationId);
    if (!integration) throw NotFoundError.integration(c.providerConfigKey);
    const own = creds.type === 'OAUTH2_CC' ? { id: creds.client_id, secret: creds.client_secret } : {};
    const ctx = integrationOAuthContext(vault, providerOf(c), integration, c.connectionConfig, own);
    if (!ctx)
      throw new FailedDependencyError(
        'integration_incomplete',
        `Integration "${c.providerConfigKey}" has no OAuth client id to refresh tokens with`,
      );
    return ctx;
  }

  const merge = (previous: StoredCredentials, tokens: TokenSet): StoredCredentials =>
    credentialsFromTokens(previous.type === 'OAUTH2' ? 'OAUTH2' : 'OAUTH2_CC', tokens, previous);

  async function callProvider(c: ConnectionWithIntegration, creds: StoredCredentials): Promise<TokenSet> {
    const ctx = await oauthContext(c, creds);
    if (creds.type === 'OAUTH2') {
      if (!creds.refresh_token) throw new OAuthError('invalid_grant', 'The connection has no refresh token');
      return oauth.refresh(ctx, creds.refresh_token);
    }
    return oauth.clientCredentials(ctx, ctx.provider.default_scopes ?? []);
  }

  /** One refresh attempt while holding the lease; the lease is released on every path. */
  async function refreshHoldingLease(c: ConnectionWithIntegration, current: StoredCredentials): Promise<StoredCredentials> {
    let tokens: TokenSet;
    try {
      tokens = await callProvider(c, current);
    } catch (err) {
      const e = asOAuthError(err);
      const dead = e.kind === 'invalid_grant';
      // Both are recorded as the connection's error, which the background refresher skips: a dead
      // grant until the user re-authorizes, a configuration error until it is fixed (see `blocked`).
      const final = dead || e.kind === 'misconfigured';
      const at = new Date();
      const failures = c.refreshFailures + 1;
      const retryAt = final ? undefined : new Date(at.getTime() + Math.min(2 ** failures * 15_000, MAX_BACKOFF_MS));
      const code = dead ? 'refresh_revoked' : final ? MISCONFIGURED : 'refresh_failed';
      const error: ConnectionError = { type: 'auth', code, message: e.message, at: at.toISOString() };
      await db.transaction(async (tx) => {
        // A transient failure after a configuration error means the request could be sent: the configuration is fixed.
        await repo.saveRefreshFailure(tx, c.id, owner, final ? { error } : { retryAt, clearError: c.error?.code === MISCONFIGURED });
        await recordEvent(tx, {
          environmentId: c.environmentId,
          type: 'auth',
          operation: 'refresh',
          success: false,
          providerConfigKey: c.providerConfigKey,
          connectionId: c.connectionId,
          payload: { error, provider_error: e.providerError ?? null, needs_reauthorization: dead },
        });
        await notifyChange(tx, 'conn', c.id);
      });
      hub.emitLocal('conn', c.id);
      log.warn(
        {
          connectionId: c.connectionId,
          providerConfigKey: c.providerConfigKey,
          kind: e.kind,
          status: e.providerError?.status,
          reason: e.message,
        },
        'token refresh failed',
      );
      if (dead) throw needsReauth(c, error);
      if (final) {
        if (unexpired(current)) return current;
        throw misconfigured(c, error);
      }
      return unusable(c, current, retryAt!);
    }
    const next = merge(current, tokens);
    const metadataFields = providerOf(c).token_response_metadata ?? [];
    const fromResponse = Object.fromEntries(metadataFields.filter((f) => typeof tokens.raw[f] === 'string').map((f) => [f, tokens.raw[f]]));
    // The provider has already invalidated the old refresh token if it rotates: this write must
    // not be lost, so it is retried before giving up.
    for (let attempt = 1; ; attempt++) {
      try {
        await db.transaction(async (tx) => {
          await repo.saveRefreshed(tx, c.id, owner, {
            credentialsEnc: vault.encryptJson(next, credentialsContext(c)),
            credentialsExpiresAt:
              next.type === 'OAUTH2' || next.type === 'OAUTH2_CC' ? (next.expires_at ? new Date(next.expires_at) : null) : null,
            refreshable: next.type === 'OAUTH2_CC' || (next.type === 'OAUTH2' && Boolean(next.refresh_token)),
            ...(Object.keys(fromResponse).length && { connectionConfig: { ...c.connectionConfig, ...fromResponse } }),
          });
          await notifyChange(tx, 'conn', c.id);
        });
        hub.emitLocal('conn', c.id);
        return next;
      } catch (err) {
        if (attempt >= 5) throw err;
        log.error({ err, connectionId: c.connectionId, attempt }, 'could not store refreshed credentials; retrying');
        await new Promise((r) => setTimeout(r, 100 * attempt));
      }
    }
  }

  async function refreshAcrossProcesses(c: ConnectionWithIntegration, seen: string | null, force: boolean): Promise<StoredCredentials> {
    const deadline = Date.now() + LEASE_MS * 2 + 5_000;
    while (Date.now() < deadline) {
      const lease = await repo.acquireRefreshLease(db, c.id, owner, LEASE_MS);
      const state = lease ?? (await repo.readRefreshState(db, c.id));
      if (!state) throw new NotFoundError(`Connection "${c.connectionId}" was deleted`);
      // Someone refreshed (or re-authorized) since we read: their credentials are the answer.
      if (state.credentialsEnc !== seen) {
        if (lease) await repo.releaseLease(db, c.id, owner);
        if (state.error) throw blockedBy(c, state.error);
        return decrypt(c, state.credentialsEnc)!;
      }
      if (lease) {
        if (state.error && !force) {
          await repo.releaseLease(db, c.id, owner);
          throw blockedBy(c, state.error);
        }
        return refreshHoldingLease({ ...c, ...state }, decrypt(c, state.credentialsEnc)!);
      }
      if (state.error && !force) throw blockedBy(c, state.error);
      const wait = Math.max(0, Math.min(POLL_MS, (state.refreshLockUntil?.getTime() ?? 0) - Date.now()));
      await hub.waitFor('conn', String(c.id), wait || 10);
    }
    throw new ServiceUnavailableError('refresh_unavailable', `Timed out waiting for the token refresh of connection "${c.connectionId}"`);
  }

  /**
   * Per row object: its decrypted credentials and when they go stale, computed once. Cached rows
   * are shared and replaced (not mutated) on every write, so a row's state never changes; only
   * the comparison with the clock runs on every call.
   */
  const rowStates = new WeakMap<ConnectionWithIntegration, { creds: StoredCredentials | undefined; staleAt: number }>();
  function stateOf(c: ConnectionWithIntegration) {
    let state = rowStates.get(c);
    if (!state) {
      const creds = decrypt(c, c.credentialsEnc);
      state = { creds, staleAt: creds ? staleAt(c, creds) : Infinity };
      rowStates.set(c, state);
    }
    return state;
  }

  /** The row's credentials if they are fresh (no promise on this path), else the refresh's result. */
  function fresh(c: ConnectionWithIntegration, force: boolean): StoredCredentials | Promise<StoredCredentials> {
    const { creds, staleAt: staleFrom } = stateOf(c);
    if (!creds) throw new FailedDependencyError('connection_has_no_credentials', `Connection "${c.connectionId}" has no credentials yet`);
    if (creds.type === 'API_KEY' || creds.type === 'BASIC') return creds;
    if (c.error && !force) return blocked(c, creds, c.error);
    const now = Date.now();
    if (!force && !(staleFrom <= now)) return creds;
    const canRefresh = creds.type === 'OAUTH2_CC' || Boolean(creds.type === 'OAUTH2' && creds.refresh_token);
    if (!canRefresh) {
      if (creds.expires_at && Date.parse(creds.expires_at) <= now) {
        throw new FailedDependencyError(
          'token_expired',
          `The token of connection "${c.connectionId}" expired and the provider gave no refresh token`,
        );
      }
      return creds;
    }
    if (!force && c.refreshRetryAt && c.refreshRetryAt.getTime() > now) return unusable(c, creds, c.refreshRetryAt);
    return refresh(c, force);
  }

  /** One refresh per connection in this process at a time; callers share its promise. */
  function refresh(c: ConnectionWithIntegration, force: boolean): Promise<StoredCredentials> {
    const running = inflight.get(c.id);
    if (running) return running;
    const promise = refreshAcrossProcesses(c, c.credentialsEnc, force).finally(() => inflight.delete(c.id));
    inflight.set(c.id, promise);
    return promise;
  }

  /**
   * A read of a connection whose last refresh recorded an error. A dead grant stays dead until the
   * user re-authorizes. A configuration error serves the current token while it lasts, then 424
   * with the reason; the refresh is tried again once the integration changed since the error, or
   * after MISCONFIGURED_RETRY_MS (force_refresh and new credentials always try again).
   */
  function blocked(
    c: ConnectionWithIntegration,
    creds: StoredCredentials,
    error: ConnectionError,
  ): StoredCredentials | Promise<StoredCredentials> {
    if (error.code !== MISCONFIGURED) throw needsReauth(c, error);
    if (unexpired(creds)) return creds;
    const since = Date.parse(error.at);
    if (!(Date.now() - since < MISCONFIGURED_RETRY_MS)) return refresh(c, true);
    return deps.integrations.findById(c.environmentId, c.integrationId).then((integration) => {
      if (integration && integration.updatedAt.getTime() > since) return refresh(c, true);
      throw misconfigured(c, error);
    });
  }

  const notFound = (key: string, connectionId: string) => NotFoundError.connection(key, connectionId);

  return {
    /** The connection's credentials, refreshed first when they expire soon or when forced. */
    async getToken(
      environmentId: string,
      providerConfigKey: string,
      connectionId: string,
      opts: { force?: boolean; cached?: boolean } = {},
    ): Promise<TokenResult> {
      // The cached read is safe for tokens: freshness is checked on every call, and a refresh
      // anywhere invalidates the cached row through its notification.
      const connection = opts.cached
        ? await reader.get(environmentId, providerConfigKey, connectionId)
        : await deps.connections.find(environmentId, providerConfigKey, connectionId);
      if (!connection) throw notFound(providerConfigKey, connectionId);
      return { connection, credentials: await fresh(connection, opts.force ?? false) };
    },

    /**
     * GET /auth/token's path: `getToken` with `cached: true`, without the result object. The row
     * comes from the connection cache (invalidated in every process on every write); freshness is
     * still checked on every call.
     */
    async credentials(environmentId: string, providerConfigKey: string, connectionId: string, force: boolean): Promise<StoredCredentials> {
      const connection = await reader.get(environmentId, providerConfigKey, connectionId);
      if (!connection) throw notFound(providerConfigKey, connectionId);
      return fresh(connection, force);
    },

    /** Background refresh of one connection by internal id; failures are recorded, not thrown. */
    async refreshById(id: number): Promise<'refreshed' | 'skipped' | 'failed'> {
      const [row] = await deps.connections.findById([id]);
      if (!row) return 'skipped';
      try {
        const before = row.credentialsEnc;
        await fresh(row, true);
        const after = await repo.readRefreshState(db, id);
        return after?.credentialsEnc !== before ? 'refreshed' : 'skipped';
      } catch (err) {
        // A refused or failed refresh was recorded on the connection where it happened; anything else
        // (the database, a bug) was not. The message only: a token library's error may hold the
        // response body (tokens) as its cause.
        const error = err instanceof Error ? err.message : String(err);
        if (err instanceof AppError)
          log.warn({ connectionId: row.connectionId, provider: row.provider, error }, 'background refresh failed');
        else log.error({ connectionId: row.connectionId, provider: row.provider, error }, 'background refresh failed');
        return 'failed';
      }
    },
  };
}
