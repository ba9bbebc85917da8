import type { StoredCredentials } from '../connections/credentials.js';
import type { ConnectionError } from '../db/schema/index.js';
import { AppError, FailedDependencyError, ServiceUnavailableError } from '../lib/errors.js';
import { OAuthError } from '../oauth/client.js';

/**
 * What a failed token refresh means and what a read gets afterwards: a dead grant (the user must
 * authorize again), a configuration error (the operator must fix the integration or the server's
 * settings), or an outage (back off, serve the current token while it works).
 */

/** Longest back-off after transient failures. */
export const MAX_BACKOFF_MS = 60 * 60_000;
/** The connection error code of a refresh the configuration forbids (see `blocked`). */
export const MISCONFIGURED = 'refresh_misconfigured';
/**
 * A misconfigured refresh is tried again on the first read after the integration changed, or
 * after this long: the operator may have changed the egress settings and restarted. Such a
 * refusal is local (no request leaves), so a retry costs nothing at the provider.
 */
export const MISCONFIGURED_RETRY_MS = 60 * 60_000;

/**
 * Whether a connection's error asks its end user to authorize again. A refresh the configuration
 * forbids does not: the operator fixes the integration, and the current token serves meanwhile.
 */
export const needsReauthorization = (error: ConnectionError | null | undefined): error is ConnectionError =>
  error?.type === 'auth' && error.code !== MISCONFIGURED;

/** Whatever a refresh threw, as an OAuthError; our own typed refusals (no client id, a missing connection_config value) are configuration errors. */
export function asOAuthError(err: unknown): OAuthError {
  if (err instanceof OAuthError) return err;
  if (err instanceof AppError) return new OAuthError('misconfigured', err.message);
  return new OAuthError('transient', err instanceof Error ? err.message : String(err));
}

export const needsReauth = (c: { connectionId: string; providerConfigKey: string }, error: ConnectionError) =>
  new FailedDependencyError(
    'connection_needs_reauthorization',
    `Connection "${c.connectionId}" of "${c.providerConfigKey}" must be re-authorized by its user: ${error.message}`,
  );

export const misconfigured = (c: { connectionId: string; providerConfigKey: string }, error: ConnectionError) =>
  new FailedDependencyError(
    MISCONFIGURED,
    `The token of connection "${c.connectionId}" cannot be refreshed until integration "${c.providerConfigKey}" or the server's settings change: ${error.message}`,
  );

/** The error a read gets for a connection whose last refresh recorded `error`. */
export const blockedBy = (c: { connectionId: string; providerConfigKey: string }, error: ConnectionError) =>
  error.code === MISCONFIGURED ? misconfigured(c, error) : needsReauth(c, error);

/** True while the access token itself still works (its expiry, if any, is ahead). */
export const unexpired = (creds: StoredCredentials): boolean =>
  'access_token' in creds &&
  Boolean(creds.access_token) &&
  (!('expires_at' in creds) || !creds.expires_at || Date.parse(creds.expires_at) > Date.now());

/** After a transient failure: the current token if it still works, else 503 with a retry time. */
export function unusable(c: { connectionId: string }, current: StoredCredentials, retryAt: Date): StoredCredentials {
  if (unexpired(current)) return current;
  throw new ServiceUnavailableError(
    'refresh_unavailable',
    `The provider could not refresh the token of connection "${c.connectionId}" right now; retry after ${retryAt.toISOString()}`,
  );
}
