import type { OAuthServer } from '../fixtures/oauth-server.js';
import { DEFAULT_CLIENT } from '../fixtures/oauth-server.js';
import type { TestApp } from './app.js';

/** Runs a plain authorization-code flow against the fixture and returns its token response. */
export async function obtainTokens(
  server: OAuthServer,
  scope = 'read',
): Promise<{ access_token: string; refresh_token: string; expires_in: number }> {
  const url = new URL(server.authorizationUrl);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: DEFAULT_CLIENT.client_id,
    redirect_uri: DEFAULT_CLIENT.redirect_uris[0]!,
    scope,
    state: 'test-state',
  }).toString();
  const redirect = await server.authorize(url.toString());
  const code = redirect.searchParams.get('code');
  if (!code) throw new Error(`no code in ${redirect.href}`);
  const res = await fetch(server.tokenUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/x-www-form-urlencoded',
      authorization: `Basic ${Buffer.from(`${DEFAULT_CLIENT.client_id}:${DEFAULT_CLIENT.client_secret}`).toString('base64')}`,
    },
    body: new URLSearchParams({ grant_type: 'authorization_code', code, redirect_uri: DEFAULT_CLIENT.redirect_uris[0]! }),
  });
  if (!res.ok) throw new Error(`token exchange failed: ${res.status} ${await res.text()}`);
  return (await res.json()) as { access_token: string; refresh_token: string; expires_in: number };
}

/** A generic `oauth2` integration pointing at the fixture, with its client. */
export async function createFixtureIntegration(t: TestApp, server: OAuthServer, key = 'fixture', extra: Record<string, unknown> = {}) {
  const r = await t.call({
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: key,
      provider: 'oauth2',
      oauth_client_id: DEFAULT_CLIENT.client_id,
      oauth_client_secret: DEFAULT_CLIENT.client_secret,
      oauth_scopes: 'read',
      authorization_url: server.authorizationUrl,
      token_url: server.tokenUrl,
      api_base_url: server.issuer,
      ...extra,
    },
  });
  if (r.statusCode !== 200) throw new Error(`integration: ${r.statusCode} ${r.body}`);
}

/** Imports fixture tokens as a connection; `expiresAt` lets a test make them stale. */
export async function importConnection(
  t: TestApp,
  key: string,
  connectionId: string,
  tokens: { access_token: string; refresh_token: string },
  expiresAt: Date,
) {
  const r = await t.call({
    method: 'POST',
    url: '/connection',
    payload: {
      connection_id: connectionId,
      provider_config_key: key,
      credentials: { access_token: tokens.access_token, refresh_token: tokens.refresh_token, expires_at: expiresAt.toISOString() },
    },
  });
  if (r.statusCode !== 200) throw new Error(`connection: ${r.statusCode} ${r.body}`);
}

/** Calls the fixture's protected resource with a token: 200 when the token works. */
export async function tokenWorks(server: OAuthServer, accessToken: string): Promise<boolean> {
  const res = await fetch(server.apiUrl, { headers: { authorization: `Bearer ${accessToken}` } });
  return res.status === 200;
}
