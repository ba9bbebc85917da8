/**
 * Importing credentials (`POST /connection`, `/v1/connections`, Nango's `POST /connections`) sends
 * the `auth` webhook the Connect flow sends: `creation` for a new connection, `override` when its
 * credentials are replaced; a metadata-only update sends none.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { until } from '../helpers/syncs.js';
import { startWebhookReceiver, type WebhookReceiver } from '../security/fixtures.js';

let t: TestApp;
let rx: WebhookReceiver;
beforeAll(async () => {
  rx = await startWebhookReceiver('/hooks');
  t = await createTestApp({ workers: true });
  expect((await t.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls: [rx.url] } })).statusCode).toBe(200);
  expect(
    (
      await t.call({
        method: 'POST',
        url: '/integration',
        payload: { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 's' },
      })
    ).statusCode,
  ).toBe(200);
});
afterAll(async () => {
  await t?.close();
  await rx?.close();
});

type Auth = {
  type: string;
  operation: string;
  success: boolean;
  connectionId: string;
  providerConfigKey: string;
  provider: string;
  authMode: string;
  endUser: unknown;
};
const authHooks = (connectionId: string) =>
  rx.received.map((r) => JSON.parse(r.body) as Auth).filter((b) => b.type === 'auth' && b.connectionId === connectionId);

describe('importing a connection', () => {
  it('sends auth creation, then override when the credentials change, and nothing for metadata', async () => {
    const create = await t.call({
      method: 'POST',
      url: '/connection',
      payload: {
        connection_id: 'imp-1',
        provider_config_key: 'gh',
        credentials: { type: 'OAUTH2', access_token: 'gho_first' },
        metadata: { a: 1 },
      },
    });
    expect(create.statusCode, create.body).toBe(200);
    const [creation] = await until('the creation webhook', async () => (authHooks('imp-1').length ? authHooks('imp-1') : undefined));
    expect(creation).toMatchObject({
      type: 'auth',
      operation: 'creation',
      success: true,
      connectionId: 'imp-1',
      providerConfigKey: 'gh',
      provider: 'github',
      authMode: 'OAUTH2',
    });

    const override = await t.call({
      method: 'POST',
      url: '/v1/connections',
      payload: { connection_id: 'imp-1', provider_config_key: 'gh', credentials: { type: 'OAUTH2', access_token: 'gho_second' } },
    });
    expect(override.statusCode, override.body).toBe(200);
    await until('the override webhook', async () => authHooks('imp-1').length === 2);
    expect(authHooks('imp-1')[1]).toMatchObject({ operation: 'override', success: true, authMode: 'OAUTH2' });

    // Metadata only: no new auth event (the next import's webhook arrives after it, so nothing is pending before).
    expect(
      (
        await t.call({
          method: 'POST',
          url: '/connection',
          payload: { connection_id: 'imp-1', provider_config_key: 'gh', metadata: { a: 2 } },
        })
      ).statusCode,
    ).toBe(200);
    expect(
      (
        await t.call({
          method: 'POST',
          url: '/connections',
          payload: { connection_id: 'imp-2', provider_config_key: 'gh', credentials: { type: 'OAUTH2', access_token: 'gho_x' } },
        })
      ).statusCode,
    ).toBe(201);
    await until('the Nango import webhook', async () => authHooks('imp-2').length === 1);
    expect(authHooks('imp-2')[0]).toMatchObject({ operation: 'creation' });
    expect(authHooks('imp-1')).toHaveLength(2);
    expect(rx.received.map((r) => r.body).join('\n')).not.toMatch(/gho_(first|second|x)/);
  });

  it('sends nothing when the import is refused', async () => {
    const before = rx.received.length;
    const bad = await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: 'imp-bad', provider_config_key: 'gh', credentials: { type: 'OAUTH2' } },
    });
    expect(bad.statusCode).toBe(400);
    // A later import's webhook arrives; none came for the refused one.
    await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: 'imp-3', provider_config_key: 'gh', credentials: { type: 'OAUTH2', access_token: 'gho_y' } },
    });
    await until('the next webhook', async () => authHooks('imp-3').length === 1);
    expect(rx.received.slice(before).some((r) => r.body.includes('imp-bad'))).toBe(false);
  });
});
