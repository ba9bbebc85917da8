import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { createLogger } from '../../src/lib/logger.js';
import { loadCatalog } from '../../src/providers/catalog.js';
import { createBackgroundRefresher } from '../../src/tokens/refresher.js';
import { DEFAULT_CLIENT, type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, defaultTestConfig, type TestApp } from '../helpers/app.js';
import { createFixtureIntegration, importConnection, obtainTokens, tokenWorks } from '../helpers/oauth.js';

/**
 * A refresh the configuration forbids is a configuration error (424 with the reason, recorded on
 * the connection, not retried in a loop), not a provider outage (503, retried forever).
 *
 * Two processes on one database: `open` allows private egress (as the tests' default, so the
 * integrations can be created and the fixture reached), `strict` is a server whose egress policy
 * forbids private addresses (and so plain-HTTP token endpoints), as in production.
 */

let open: TestApp;
let strict: TestApp;
let server: OAuthServer;
const past = () => new Date(Date.now() - 60_000);

beforeAll(async () => {
  server = await startOAuthServer();
  open = await createTestApp({ config: { allowProviderUrlOverrides: true } });
  strict = await createTestApp({
    db: open.db,
    vault: open.vault,
    config: { egress: { ...defaultTestConfig.egress, allowPrivateNetworks: false } },
  });
  // An HTTPS token URL on a loopback address: the egress policy refuses it before any connection.
  const r = await open.call({
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: 'private',
      provider: 'oauth2',
      oauth_client_id: DEFAULT_CLIENT.client_id,
      oauth_client_secret: DEFAULT_CLIENT.client_secret,
      authorization_url: 'https://127.0.0.1:9/authorize',
      token_url: 'https://127.0.0.1:9/token',
    },
  });
  expect(r.statusCode, r.body).toBe(200);
  // The fixture's token URL is plain http://: openid-client refuses it when private egress is off.
  await createFixtureIntegration(open, server, 'plain');
});
afterAll(async () => {
  await strict?.close();
  await open?.close();
  await server?.close();
});

const token = (app: TestApp, key: string, id: string) => app.call({ method: 'GET', url: `/auth/token/${key}/${id}`, key: open.env.key });
const refreshEvents = async (connectionId: string) =>
  (
    await queryRows<{ n: number }>(
      open.db.database.db,
      sql`SELECT count(*)::int AS n FROM events WHERE connection_id = ${connectionId} AND operation = 'refresh'`,
    )
  )[0]!.n;
const listedErrors = async (connectionId: string) =>
  (await open.call({ method: 'GET', url: `/connections?connectionId=${connectionId}` })).json().connections[0].errors;

describe('a token refresh the configuration forbids', () => {
  it('a token URL on a private address while egress forbids it: 424 refresh_misconfigured with the reason, recorded once', async () => {
    await importConnection(open, 'private', 'p1', { access_token: 'old-access', refresh_token: 'old-refresh' }, past());
    const r = await token(strict, 'private', 'p1');
    expect(r.statusCode, r.body).toBe(424);
    expect(r.json()).toEqual({
      error: 'refresh_misconfigured',
      message: expect.stringMatching(
        /^The token of connection "p1" cannot be refreshed until integration "private" or the server's settings change: /,
      ),
    });
    expect(r.json().message).toContain('egress to 127.0.0.1 denied: loopback address');
    expect(r.json().message).toContain('TERAPI_EGRESS_ALLOW_PRIVATE');
    expect(r.body).not.toContain('old-refresh');
    expect(await listedErrors('p1')).toEqual([expect.objectContaining({ type: 'auth', code: 'refresh_misconfigured' })]);

    // Not tried again on every read: the same answer, no second attempt.
    const again = await token(strict, 'private', 'p1');
    expect(again.statusCode).toBe(424);
    expect(again.json().error).toBe('refresh_misconfigured');
    expect(await refreshEvents('p1')).toBe(1);
  });

  it('an http:// token URL: 424 naming it, no request sent; fixed integration → the next read refreshes', async () => {
    await importConnection(open, 'plain', 'h1', await obtainTokens(server), past());
    server.resetCounters();
    const r = await token(strict, 'plain', 'h1');
    expect(r.statusCode, r.body).toBe(424);
    expect(r.json().error).toBe('refresh_misconfigured');
    expect(r.json().message).toMatch(new RegExp(`The token URL ${server.issuer.replace(/[.]/g, '\\.')} is not HTTPS`));
    expect(server.grants.attempts.refresh_token).toBe(0);
    expect(await refreshEvents('h1')).toBe(1);

    // Even a server that could reach it does not retry while nothing changed...
    const unchanged = await token(open, 'plain', 'h1');
    expect(unchanged.statusCode).toBe(424);
    expect(server.grants.attempts.refresh_token).toBe(0);

    // ...and once the integration changes, the next read tries again (here on a server that may).
    const patched = await open.call({ method: 'PATCH', url: '/integrations/plain', payload: { display_name: 'Fixture (fixed)' } });
    expect(patched.statusCode, patched.body).toBe(200);
    const fixed = await token(open, 'plain', 'h1');
    expect(fixed.statusCode, fixed.body).toBe(200);
    expect(await tokenWorks(server, fixed.json().access_token)).toBe(true);
    expect(server.grants.refresh_token).toBe(1);
    expect(await listedErrors('h1')).toEqual([]);
  });

  it('is tried again after an hour (the server settings may have changed since)', async () => {
    await importConnection(open, 'private', 'p2', { access_token: 'old-access', refresh_token: 'old-refresh' }, past());
    expect((await token(strict, 'private', 'p2')).json().error).toBe('refresh_misconfigured');
    expect((await token(strict, 'private', 'p2')).json().error).toBe('refresh_misconfigured');
    expect(await refreshEvents('p2')).toBe(1);
    const hoursAgo = new Date(Date.now() - 61 * 60_000).toISOString();
    await open.db.database.db.execute(
      sql`UPDATE connections SET error = jsonb_set(error, '{at}', to_jsonb(${hoursAgo}::text)) WHERE connection_id = 'p2'`,
    );
    // A process that has not cached the row (this update bypasses the change notifications).
    const fresh = await createTestApp({
      db: open.db,
      vault: open.vault,
      config: { egress: { ...defaultTestConfig.egress, allowPrivateNetworks: false } },
    });
    try {
      const r = await token(fresh, 'private', 'p2');
      expect(r.json().error).toBe('refresh_misconfigured');
      expect(await refreshEvents('p2')).toBe(2);
    } finally {
      await fresh.close();
    }
  });

  it('the background refresher leaves a misconfigured connection alone, however long it waits', async () => {
    // As if any back-off had run out.
    await open.db.database.db.execute(
      sql`UPDATE connections SET refresh_retry_at = NULL, updated_at = now() - interval '1 day' WHERE connection_id = 'p1'`,
    );
    const refresher = createBackgroundRefresher({
      db: strict.db.database.db,
      catalog: loadCatalog(),
      tokens: strict.services.tokens,
      flows: strict.services.flows,
      log: createLogger({ level: 'silent' }),
      marginSeconds: 900,
      intervalSeconds: 60,
    });
    expect(await refresher.runOnce()).toEqual({ refreshed: 0, failed: 0, skipped: 0 });
    expect(await refreshEvents('p1')).toBe(1);
  });
});
