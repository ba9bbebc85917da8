import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createFixtureIntegration, importConnection, obtainTokens, tokenWorks } from '../helpers/oauth.js';

let t: TestApp;
let server: OAuthServer;
const past = () => new Date(Date.now() - 60_000);
const later = () => new Date(Date.now() + 3600_000);

beforeAll(async () => {
  server = await startOAuthServer();
  t = await createTestApp();
  await createFixtureIntegration(t, server);
});
afterAll(async () => {
  await t?.close();
  await server?.close();
});
beforeEach(() => server.resetCounters());

const token = (id: string, query = '') => t.call({ method: 'GET', url: `/auth/token/fixture/${id}${query}` });

describe('GET /auth/token', () => {
  it('returns a valid token without calling the provider', async () => {
    const tokens = await obtainTokens(server);
    await importConnection(t, 'fixture', 'fresh', tokens, later());
    server.resetCounters();
    const r = await token('fresh');
    expect(r.statusCode).toBe(200);
    expect(r.json()).toMatchObject({ type: 'Bearer', access_token: tokens.access_token });
    expect(r.body).not.toContain(tokens.refresh_token);
    expect(server.grants.attempts.refresh_token).toBe(0);
    expect((await t.call({ method: 'GET', url: '/v1/auth/token/fixture/fresh' })).json().access_token).toBe(tokens.access_token);
  });

  it('refreshes an expired token once, stores the rotated refresh token, and the chain stays valid', async () => {
    const tokens = await obtainTokens(server);
    await importConnection(t, 'fixture', 'stale', tokens, past());
    server.resetCounters();
    const first = await token('stale');
    expect(first.statusCode).toBe(200);
    const refreshed = first.json();
    expect(refreshed.access_token).not.toBe(tokens.access_token);
    expect(Date.parse(refreshed.expires_at)).toBeGreaterThan(Date.now() + 600_000);
    expect(await tokenWorks(server, refreshed.access_token)).toBe(true);
    expect(server.grants.refresh_token).toBe(1);

    // The next call is served from the stored token; a forced refresh uses the rotated refresh token.
    expect((await token('stale')).json().access_token).toBe(refreshed.access_token);
    const forced = await token('stale', '?force_refresh=true');
    expect(forced.statusCode).toBe(200);
    expect(forced.json().access_token).not.toBe(refreshed.access_token);
    expect(server.grants.refresh_token).toBe(2);
    const again = await token('stale', '?force_refresh=true');
    expect(again.statusCode).toBe(200);
    expect(await tokenWorks(server, again.json().access_token)).toBe(true);
  });

  it('refreshes once for many concurrent requests in one process', async () => {
    const tokens = await obtainTokens(server);
    await importConnection(t, 'fixture', 'busy', tokens, past());
    server.resetCounters();
    const results = await Promise.all(Array.from({ length: 50 }, () => token('busy')));
    expect(results.every((r) => r.statusCode === 200)).toBe(true);
    expect(new Set(results.map((r) => r.json().access_token)).size).toBe(1);
    expect(server.grants.attempts.refresh_token).toBe(1);
  });

  it('serves API keys and basic credentials as they are', async () => {
    await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'sg', provider: 'sendgrid' } });
    await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: 'k', provider_config_key: 'sg', credentials: { api_key: 'SG.x' } },
    });
    expect((await t.call({ method: 'GET', url: '/auth/token/sg/k' })).json()).toEqual({ type: 'ApiKey', access_token: 'SG.x', raw: {} });
    expect((await t.call({ method: 'GET', url: '/auth/token/sg/missing' })).statusCode).toBe(404);
  });
});

describe('refresh lease', () => {
  it('a lease left by a dead process expires, and the next request refreshes', async () => {
    const tokens = await obtainTokens(server);
    await importConnection(t, 'fixture', 'orphan', tokens, past());
    // A process that took the lease and died: nobody will release it.
    await t.db.database.db.execute(
      sql`UPDATE connections SET refresh_lock_owner = 'dead-process', refresh_lock_until = now() + interval '1500 milliseconds' WHERE connection_id = 'orphan'`,
    );
    server.resetCounters();
    const started = Date.now();
    const r = await token('orphan');
    expect(r.statusCode).toBe(200);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(server.grants.refresh_token).toBe(1);
    expect(await tokenWorks(server, r.json().access_token)).toBe(true);
  });
});

describe('refresh failures', () => {
  it('a revoked refresh token marks the connection and later reads answer 424 without calling the provider', async () => {
    const tokens = await obtainTokens(server);
    await importConnection(t, 'fixture', 'revoked', tokens, past());
    await server.revokeAllRefreshTokens();
    server.resetCounters();

    const r = await token('revoked');
    expect(r.statusCode).toBe(424);
    expect(r.json().error).toBe('connection_needs_reauthorization');
    expect(server.grants.attempts.refresh_token).toBe(1);

    const again = await token('revoked');
    expect(again.statusCode).toBe(424);
    expect(server.grants.attempts.refresh_token).toBe(1);

    const listed = (await t.call({ method: 'GET', url: '/connections?connectionId=revoked' })).json().connections[0];
    expect(listed.errors).toEqual([expect.objectContaining({ type: 'auth', code: 'refresh_revoked' })]);
    const seedList = (await t.call({ method: 'GET', url: '/connection?connection_id=revoked' })).json().connections[0];
    expect(seedList.error).toMatchObject({ type: 'auth', code: 'refresh_revoked' });
    const events = await queryRows<{ operation: string; success: boolean }>(
      t.db.database.db,
      sql`SELECT operation, success FROM events WHERE connection_id = 'revoked' ORDER BY id`,
    );
    // The import's auth creation, then the failed refresh.
    expect(events).toEqual([
      { operation: 'creation', success: true },
      { operation: 'refresh', success: false },
    ]);

    // Importing new credentials clears the error.
    await importConnection(t, 'fixture', 'revoked', await obtainTokens(server), later());
    expect((await token('revoked')).statusCode).toBe(200);
  });

  it('a provider 503 is retried with back-off and does not invalidate the connection', async () => {
    const tokens = await obtainTokens(server);
    await importConnection(t, 'fixture', 'flaky', tokens, past());
    server.resetCounters();
    server.failNextTokenRequests(3, 503);

    const r = await token('flaky');
    expect(r.statusCode).toBe(503);
    expect(r.json().error).toBe('refresh_unavailable');
    expect(server.grants.attempts.refresh_token).toBe(3);

    // Backing off: an immediate read does not hit the provider again.
    expect((await token('flaky')).statusCode).toBe(503);
    expect(server.grants.attempts.refresh_token).toBe(3);
    const listed = (await t.call({ method: 'GET', url: '/connections?connectionId=flaky' })).json().connections[0];
    expect(listed.errors).toEqual([]);

    // Forcing goes through once the provider is back, and the chain still works.
    const forced = await token('flaky', '?force_refresh=true');
    expect(forced.statusCode).toBe(200);
    expect(await tokenWorks(server, forced.json().access_token)).toBe(true);
  });

  it('keeps serving a still-valid token when a refresh inside the margin fails transiently', async () => {
    const tokens = await obtainTokens(server);
    // Valid for 5 more minutes: inside the 15-minute margin, so Terapi tries to refresh.
    await importConnection(t, 'fixture', 'margin', tokens, new Date(Date.now() + 5 * 60_000));
    server.failNextTokenRequests(3, 502);
    const r = await token('margin');
    expect(r.statusCode).toBe(200);
    expect(r.json().access_token).toBe(tokens.access_token);
  });
});
