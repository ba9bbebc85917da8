import type { IntegrationRow } from '../integrations/repository.js';
import { decryptClientSecret } from '../integrations/service.js';
import type { Logger } from '../lib/logger.js';
import type { Vault } from '../lib/vault.js';
import { fillTemplate } from '../providers/template.js';
import type { Provider } from '../providers/schema.js';
import type { StoredCredentials } from './credentials.js';

/** What revoking one deleted connection's grant needs, gathered before the row is gone. */
export interface Revocation {
  provider: Provider;
  integration: Pick<IntegrationRow, 'environmentId' | 'oauthClientId' | 'oauthClientSecretEnc' | 'urlOverrides'>;
  connectionConfig: Record<string, unknown>;
  /** Decrypted inside the best-effort part: a key no longer configured must not fail the delete. */
  credentials: () => StoredCredentials;
  /** For the log line. */
  connectionId: string;
}

/**
 * Where and how this provider revokes grants: the catalog's endpoint, or the integration's
 * `revocation_url` (the generic providers, a self-hosted GitHub Enterprise) in the catalog's style,
 * RFC 7009 where the catalog has none.
 */
export function revocationEndpoint(
  provider: Provider,
  overrides: IntegrationRow['urlOverrides'],
): NonNullable<Provider['revocation']> | undefined {
  if (overrides.revocation_url) return { url: overrides.revocation_url, style: provider.revocation?.style ?? 'rfc7009' };
  return provider.revocation;
}

/**
 * Revokes a deleted connection's grant at the provider, where the catalog knows how: best effort,
 * through the egress client, after the delete committed. Never throws: the outcome is logged.
 */
export async function revokeGrant(deps: { fetch: typeof fetch; vault: Vault; log: Logger }, r: Revocation): Promise<void> {
  const log = deps.log.child({ provider: r.provider.name, connectionId: r.connectionId });
  try {
    const endpoint = revocationEndpoint(r.provider, r.integration.urlOverrides);
    if (!endpoint) return;
    const c = r.credentials();
    if (c.type !== 'OAUTH2') return;
    const clientId = r.integration.oauthClientId ?? undefined;
    const clientSecret = decryptClientSecret(deps.vault, r.integration);
    const basic =
      clientId && clientSecret
        ? `Basic ${Buffer.from(`${encodeURIComponent(clientId)}:${encodeURIComponent(clientSecret)}`).toString('base64')}`
        : undefined;
    const url = fillTemplate(endpoint.url, r.connectionConfig);
    let res: Response;
    if (endpoint.style === 'rfc7009') {
      // Revoking the refresh token ends the grant (RFC 7009 §2.1), which takes its access tokens with it.
      const form = new URLSearchParams({
        token: c.refresh_token ?? c.access_token,
        token_type_hint: c.refresh_token ? 'refresh_token' : 'access_token',
      });
      const headers: Record<string, string> = { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' };
      if (r.provider.token_request_auth_method === 'client_secret_post' || !basic) {
        if (clientId) form.set('client_id', clientId);
        if (clientSecret) form.set('client_secret', clientSecret);
      } else {
        headers.authorization = basic;
      }
      res = await deps.fetch(url, { method: 'POST', headers, body: form.toString() });
    } else if (endpoint.style === 'bearer') {
      res = await deps.fetch(url, { method: 'POST', headers: { authorization: `Bearer ${c.access_token}`, accept: 'application/json' } });
    } else {
      if (!clientId || !basic) {
        log.warn('grant not revoked at the provider: the integration has no OAuth client');
        return;
      }
      res = await deps.fetch(url.replace('{client_id}', encodeURIComponent(clientId)), {
        method: 'DELETE',
        headers: { authorization: basic, 'content-type': 'application/json', accept: 'application/vnd.github+json' },
        body: JSON.stringify({ access_token: c.access_token }),
      });
    }
    const body = await res.text().catch(() => '');
    // Slack answers 200 with `{"ok": false, "error": …}` when it did not revoke.
    const refusedInBody = res.ok && /^\s*\{/.test(body) && (JSON.parse(body) as { ok?: unknown }).ok === false;
    if (res.ok && !refusedInBody) log.info({ status: res.status }, 'grant revoked at the provider');
    else
      log.warn(
        { status: res.status, ...(refusedInBody && { error: (JSON.parse(body) as { error?: unknown }).error }) },
        'the provider refused to revoke the grant',
      );
  } catch (err) {
    log.warn({ err: err instanceof Error ? { name: err.name, message: err.message } : String(err) }, 'grant not revoked at the provider');
  }
}

/** Revocations run in the background after their delete; `settled` waits for those started (shutdown, tests). */
export function createRevoker(deps: { fetch: typeof fetch; vault: Vault; log: Logger }) {
  const pending = new Set<Promise<void>>();
  return {
    start: (r: Revocation): void => {
      const revocation = revokeGrant(deps, r);
      pending.add(revocation);
      void revocation.finally(() => pending.delete(revocation));
    },
    settled: async (): Promise<void> => {
      await Promise.all([...pending]);
    },
  };
}
