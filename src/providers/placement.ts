import type { StoredCredentials } from '../connections/credentials.js';
import type { Provider } from './schema.js';

/**
 * How a request to the provider's API carries the connection's credentials: `Authorization:
 * Bearer` for OAuth, and the catalog's `credential_placement` template for API keys and basic auth
 * (`${apiKey}`, `${username}`, `${password}`, `${base64(a:b)}` where a and b are those names or
 * literal text).
 */
export function credentialHeaders(
  provider: Provider,
  credentials: StoredCredentials,
): { headers: Record<string, string>; query: Record<string, string> } {
  if (credentials.type === 'OAUTH2' || credentials.type === 'OAUTH2_CC') {
    return { headers: credentials.access_token ? { authorization: `Bearer ${credentials.access_token}` } : {}, query: {} };
  }
  const placement = provider.credential_placement;
  if (!placement) return { headers: {}, query: {} };
  const values: Record<string, string> =
    credentials.type === 'API_KEY' ? { apiKey: credentials.api_key } : { username: credentials.username, password: credentials.password };
  const part = (name: string) => values[name] ?? name;
  const value = placement.value
    .replace(/\$\{base64\(([^)]*)\)\}/g, (_, inner: string) => Buffer.from(inner.split(':').map(part).join(':')).toString('base64'))
    .replace(/\$\{(apiKey|username|password)\}/g, (_, name: string) => values[name] ?? '');
  return placement.in === 'header'
    ? { headers: { [placement.name.toLowerCase()]: value }, query: {} }
    : { headers: {}, query: { [placement.name]: value } };
}
