/**
 * Deleting a connection revokes its grant at the provider where the catalog (or, for the generic
 * oauth2 provider, the integration) names a revocation endpoint: after the delete committed, best
 * effort, logged, never failing the delete. Played by the OAuth server fixture (oidc-provider's
 * RFC 7009 endpoint).
 */
import { createServer } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadCatalog } from '../../src/providers/catalog.js';
import { startFakeGithub } from '../fixtures/providers/github.js';
import { DEFAULT_CLIENT, type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, type TestApp, testVault } from '../helpers/app.js';
import { createFixtureIntegration, importConnection, obtainTokens, tokenWorks } from '../helpers/oauth.js';

let t: TestApp;
let server: OAuthServer;
beforeAll(async () => {
  server = await startOAuthServer();
  t = await createTestApp();
});
afterAll(async () => {
  await t?.close();
  await server?.close();
});

const inAnHour = () => new Date(Date.now() + 3600_000);
const logLines = (since: number) =>
  t.logs.slice(since).map((l) => JSON.parse(l) as { msg: string; connectionId?: string; status?: number });

describe('deleting a connection', () => {
  it('revokes its grant at the RFC 7009 endpoint, so neither token works any more', async () => {
    await createFixtureIntegration(t, server, 'revoking', { revocation_url: server.revocationUrl });
    const tokens = await obtainTokens(server);
    await importConnection(t, 'revoking', 'user-1', tokens, inAnHour());
    expect(await tokenWorks(server, tokens.access_token)).toBe(true);
    server.resetCounters();
    const before = t.logs.length;

    for (const path of ['/connection/user-1', '/v1/connections/user-1']) {
      const res = await t.call({ method: 'DELETE', url: `${path}?provider_config_key=revoking` });
      expect(res.statusCode, res.body).toBe(path === '/connection/user-1' ? 204 : 404);
    }
    await t.services.connections.settled();
    expect(server.revocations.requests).toBe(1);
    expect(await tokenWorks(server, tokens.access_token)).toBe(false);
    // The grant is gone: the refresh token is refused too.
    const refresh = await fetch(server.tokenUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({
        grant_type: 'refresh_token',
        refresh_token: tokens.refresh_token,
        client_id: DEFAULT_CLIENT.client_id,
        client_secret: DEFAULT_CLIENT.client_secret,
      }),
    });
    expect(refresh.ok).toBe(false);
    expect(logLines(before)).toContainEqual(
      expect.objectContaining({ msg: 'grant revoked at the provider', connectionId: 'user-1', status: 200 }),
    );
    expect(t.logs.slice(before).join('\n')).not.toContain(tokens.refresh_token);
  });

  it('does not revoke where no endpoint is known', async () => {
    await createFixtureIntegration(t, server, 'not-revoking');
    const tokens = await obtainTokens(server);
    await importConnection(t, 'not-revoking', 'user-2', tokens, inAnHour());
    server.resetCounters();
    expect((await t.call({ method: 'DELETE', url: '/connection/user-2?provider_config_key=not-revoking' })).statusCode).toBe(204);
    await t.services.connections.settled();
    expect(server.revocations.requests).toBe(0);
    expect(await tokenWorks(server, tokens.access_token)).toBe(true);
  });

  it('still deletes when the provider cannot be reached, and logs why', async () => {
    // A port nothing listens on.
    const closed = await new Promise<number>((resolve) => {
      const s = createServer().listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number };
        s.close(() => resolve(port));
      });
    });
    await createFixtureIntegration(t, server, 'unreachable', { revocation_url: `http://127.0.0.1:${closed}/revoke` });
    const tokens = await obtainTokens(server);
    await importConnection(t, 'unreachable', 'user-3', tokens, inAnHour());
    const before = t.logs.length;
    const res = await t.call({ method: 'DELETE', url: '/connections/user-3?provider_config_key=unreachable' });
    expect(res.statusCode, res.body).toBe(200);
    await t.services.connections.settled();
    expect((await t.call({ method: 'GET', url: '/connection/user-3?provider_config_key=unreachable' })).statusCode).toBe(404);
    expect(logLines(before)).toContainEqual(expect.objectContaining({ msg: 'grant not revoked at the provider', connectionId: 'user-3' }));
  });

  it('still deletes when the credentials cannot be decrypted any more (their key was removed)', async () => {
    await createFixtureIntegration(t, server, 'rotated', { revocation_url: server.revocationUrl });
    const tokens = await obtainTokens(server);
    await importConnection(t, 'rotated', 'user-4', tokens, inAnHour());
    // Another process on the same database whose only encryption key is a new one.
    const other = await createTestApp({ db: t.db, vault: testVault() });
    try {
      const before = other.logs.length;
      const res = await other.call({ method: 'DELETE', url: '/connection/user-4?provider_config_key=rotated', key: t.env.key });
      expect(res.statusCode, res.body).toBe(204);
      await other.services.connections.settled();
      expect((await t.call({ method: 'GET', url: '/connection/user-4?provider_config_key=rotated' })).statusCode).toBe(404);
      expect(other.logs.slice(before).map((l) => JSON.parse(l) as { msg: string; connectionId?: string })).toContainEqual(
        expect.objectContaining({ msg: 'grant not revoked at the provider', connectionId: 'user-4' }),
      );
    } finally {
      await other.close();
    }
  });

  it("revokes a GitHub connection's token only, with the OAuth app's credentials", async () => {
    const gh = await startFakeGithub();
    const app = await createTestApp({ db: t.db, vault: t.vault, config: { allowProviderUrlOverrides: true } });
    try {
      const integration = await app.call({
        method: 'POST',
        url: '/integration',
        key: t.env.key,
        payload: {
          provider_config_key: 'gh-revoking',
          provider: 'github',
          oauth_client_id: 'Iv1.app',
          oauth_client_secret: 'app-secret',
          api_base_url: gh.url,
          revocation_url: `${gh.url}/applications/{client_id}/token`,
        },
      });
      expect(integration.statusCode, integration.body).toBe(200);
      const token = gh.token;
      const imported = await app.call({
        method: 'POST',
        url: '/connection',
        key: t.env.key,
        payload: { connection_id: 'gh-user', provider_config_key: 'gh-revoking', credentials: { type: 'OAUTH2', access_token: token } },
      });
      expect(imported.statusCode, imported.body).toBe(200);
      const res = await app.call({ method: 'DELETE', url: '/connection/gh-user?provider_config_key=gh-revoking', key: t.env.key });
      expect(res.statusCode, res.body).toBe(204);
      await app.services.connections.settled();
      expect(gh.revokedTokens).toEqual([token]);
      const revoke = gh.state.requests.find((r) => r.method === 'DELETE');
      expect(revoke?.path).toBe('/applications/Iv1.app/token');
    } finally {
      await app.close();
      await gh.close();
    }
  });

  it('knows the revocation endpoints of the providers the README lists', async () => {
    const catalog = loadCatalog();
    const revoking = catalog
      .list()
      .filter((p) => p.revocation)
      .map((p) => `${p.name}:${p.revocation!.style}`);
    expect(revoking.sort()).toEqual(
      [
        'box:rfc7009',
        'discord:rfc7009',
        'dropbox:bearer',
        'github:github',
        'google-calendar:rfc7009',
        'google-drive:rfc7009',
        'google-mail:rfc7009',
        'google-sheets:rfc7009',
        'linear:bearer',
        'slack:bearer',
      ].sort(),
    );
    // One token, not the user's whole authorization of the app (`/grant`), which other connections may share.
    expect(catalog.get('github')?.revocation?.url).toBe('https://api.github.com/applications/{client_id}/token');
  });
});
