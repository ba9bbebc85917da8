import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/lib/logger.js';
import { loadCatalog } from '../../src/providers/catalog.js';
import { createBackgroundRefresher } from '../../src/tokens/refresher.js';
import { type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createFixtureIntegration, importConnection, obtainTokens } from '../helpers/oauth.js';

let t: TestApp;
let server: OAuthServer;

beforeAll(async () => {
  server = await startOAuthServer();
  t = await createTestApp({ config: { allowProviderUrlOverrides: true } });
  await createFixtureIntegration(t, server);
});
afterAll(async () => {
  await t?.close();
  await server?.close();
});

describe('background token refresh', () => {
  it('logs a failed refresh at warn, naming the connection, without the tokens', async () => {
    const tokens = await obtainTokens(server);
    await importConnection(t, 'fixture', 'doomed', tokens, new Date(Date.now() + 60_000));
    await server.revokeAllRefreshTokens();
    const refresher = createBackgroundRefresher({
      db: t.db.database.db,
      catalog: loadCatalog(),
      tokens: t.services.tokens,
      flows: t.services.flows,
      log: createLogger({ level: 'silent' }),
      marginSeconds: 900,
      intervalSeconds: 60,
    });
    expect((await refresher.runOnce()).failed).toBe(1);
    const failed = t.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.msg === 'background refresh failed');
    expect(failed).toHaveLength(1);
    expect(failed[0]).toMatchObject({ level: 40, connectionId: 'doomed', error: expect.any(String) });
    const all = t.logs.join('\n');
    expect(all).not.toContain(tokens.refresh_token);
    expect(all).not.toContain(tokens.access_token);
  });
});
