import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { createLogger } from '../../src/lib/logger.js';
import { loadCatalog } from '../../src/providers/catalog.js';
import { createServices, type Services } from '../../src/services.js';
import { createBackgroundRefresher } from '../../src/tokens/refresher.js';
import { DEFAULT_CLIENT, type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, defaultTestConfig, type TestApp, testRedis } from '../helpers/app.js';
import { createFixtureIntegration, importConnection, obtainTokens, tokenWorks } from '../helpers/oauth.js';

let t: TestApp;
let server: OAuthServer;
let services: Services;

beforeAll(async () => {
  server = await startOAuthServer();
  t = await createTestApp({ config: { allowProviderUrlOverrides: true } });
  await createFixtureIntegration(t, server);
  // Xero revokes refresh tokens unused for 60 days and rotates them; here it is played by the fixture.
  await t.call({
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: 'xero',
      provider: 'xero',
      oauth_client_id: DEFAULT_CLIENT.client_id,
      oauth_client_secret: DEFAULT_CLIENT.client_secret,
      authorization_url: server.authorizationUrl,
      token_url: server.tokenUrl,
    },
  });
  // The worker's side: its own services on the same database, as `terapi worker` builds them.
  services = await createServices({
    config: { ...defaultTestConfig, allowProviderUrlOverrides: true },
    database: t.db.database,
    vault: t.vault,
    catalog: loadCatalog(),
    logger: createLogger({ level: 'silent' }),
    redis: await testRedis(),
  });
});
afterAll(async () => {
  await services?.close();
  await t?.close();
  await server?.close();
});

const refresher = () =>
  createBackgroundRefresher({
    db: t.db.database.db,
    catalog: loadCatalog(),
    tokens: services.tokens,
    flows: services.flows,
    log: createLogger({ level: 'silent' }),
    marginSeconds: 900,
    intervalSeconds: 60,
  });

describe('background refresh', () => {
  it('renews tokens about to expire and idle refresh tokens, and leaves the rest alone', async () => {
    const soon = await obtainTokens(server);
    await importConnection(t, 'fixture', 'expiring-soon', soon, new Date(Date.now() + 10 * 60_000));
    const healthy = await obtainTokens(server);
    await importConnection(t, 'fixture', 'healthy', healthy, new Date(Date.now() + 6 * 3600_000));
    const idle = await obtainTokens(server);
    // No stated expiry, last renewed 40 days ago: past half of Xero's 60-day idle window.
    await t.call({
      method: 'POST',
      url: '/connection',
      payload: {
        connection_id: 'idle',
        provider_config_key: 'xero',
        credentials: { access_token: idle.access_token, refresh_token: idle.refresh_token },
      },
    });
    await t.db.database.db.execute(sql`UPDATE connections SET created_at = now() - interval '40 days' WHERE connection_id = 'idle'`);
    await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: 'no-refresh', provider_config_key: 'fixture', credentials: { access_token: 'static' } },
    });
    server.resetCounters();

    const result = await refresher().runOnce();
    expect(result).toEqual({ refreshed: 2, failed: 0, skipped: 0 });
    expect(server.grants.refresh_token).toBe(2);

    const soonNow = (await t.call({ method: 'GET', url: '/auth/token/fixture/expiring-soon' })).json();
    expect(soonNow.access_token).not.toBe(soon.access_token);
    expect(await tokenWorks(server, soonNow.access_token)).toBe(true);
    expect((await t.call({ method: 'GET', url: '/auth/token/fixture/healthy' })).json().access_token).toBe(healthy.access_token);
    expect((await t.call({ method: 'GET', url: '/auth/token/xero/idle' })).json().access_token).not.toBe(idle.access_token);

    // Nothing is due any more.
    server.resetCounters();
    expect(await refresher().runOnce()).toEqual({ refreshed: 0, failed: 0, skipped: 0 });
    expect(server.grants.attempts.refresh_token).toBe(0);
  });

  it('removes connect sessions that expired more than a day ago', async () => {
    const created = await t.call({ method: 'POST', url: '/connect/sessions', payload: { end_user: { id: 'old-user' } } });
    expect(created.statusCode).toBe(201);
    await t.call({ method: 'POST', url: '/connect/sessions', payload: { end_user: { id: 'live-user' } } });
    await t.db.database.db.execute(sql`UPDATE connect_sessions SET expires_at = now() - interval '2 days' WHERE end_user_id = 'old-user'`);
    await refresher().runOnce();
    const left = await queryRows<{ end_user_id: string }>(
      t.db.database.db,
      sql`SELECT end_user_id FROM connect_sessions ORDER BY end_user_id`,
    );
    expect(left.map((r) => r.end_user_id)).toEqual(['live-user']);
  });

  it('records a failure and skips broken connections next time', async () => {
    const tokens = await obtainTokens(server);
    await importConnection(t, 'fixture', 'doomed', tokens, new Date(Date.now() + 60_000));
    await server.revokeAllRefreshTokens();
    server.resetCounters();
    expect((await refresher().runOnce()).failed).toBe(1);
    expect((await t.call({ method: 'GET', url: '/auth/token/fixture/doomed' })).statusCode).toBe(424);
    server.resetCounters();
    await refresher().runOnce();
    expect(server.grants.attempts.refresh_token).toBe(0);
  });
});
