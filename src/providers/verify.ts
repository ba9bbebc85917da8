import type { StoredCredentials } from '../connections/credentials.js';
import type { UrlOverrides } from '../db/schema/index.js';
import { fillTemplate } from './template.js';
import { credentialHeaders } from './placement.js';
import type { Provider } from './schema.js';

export type Verification = { ok: true } | { ok: false; reason: 'invalid' | 'unavailable'; status?: number };

/**
 * Checks API-key or basic credentials with the catalog's verification request before they are
 * stored: 401/403 means the user typed a wrong key; anything else unexpected means we could not
 * tell, and nothing is stored either. Providers without a verification request pass.
 */
export async function verifyCredentials(
  fetchFn: typeof fetch,
  provider: Provider,
  overrides: UrlOverrides,
  connectionConfig: Record<string, unknown>,
  credentials: StoredCredentials,
): Promise<Verification> {
  const check = provider.verification;
  const base = overrides.api_base_url ?? provider.api_base_url;
  if (!check || !base) return { ok: true };
  const url = new URL(fillTemplate(base, connectionConfig).replace(/\/+$/, '') + check.path);
  const { headers, query } = credentialHeaders(provider, credentials);
  for (const [k, v] of Object.entries(query)) url.searchParams.set(k, v);
  try {
    const res = await fetchFn(url, { method: check.method, headers: { accept: 'application/json', ...headers } });
    await res.arrayBuffer().catch(() => undefined);
    if (res.ok) return { ok: true };
    if (res.status === 401 || res.status === 403) return { ok: false, reason: 'invalid', status: res.status };
    return { ok: false, reason: 'unavailable', status: res.status };
  } catch {
    return { ok: false, reason: 'unavailable' };
  }
}
