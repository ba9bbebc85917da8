import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { startFakeSlack, type FakeSlack } from '../fixtures/providers/slack.js';

let t: TestApp;
let slack: FakeSlack;

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

beforeAll(async () => {
  slack = await startFakeSlack({ users: 450, channels: 30 });
  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true } });
  const r = await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'slack', provider: 'slack', oauth_client_id: 'id', oauth_client_secret: 's', api_base_url: slack.url } });
  expect(r.statusCode, r.body).toBe(200);
  const c = await t.call({ method: 'POST', url: '/connection', payload: { connection_id: 'acme', provider_config_key: 'slack', credentials: { type: 'OAUTH2', access_token: slack.token } } });
  expect(c.statusCode, c.body).toBe(200);
});
afterAll(async () => {
  await t?.close();
  await slack?.close();
});

describe('slack', () => {
  it('syncs users into records and answers status', async () => {
    const e = await t.call({ method: 'POST', url: '/integration/slack/functions', payload: { name: 'users', frequency: '1h' } });
    expect(e.statusCode, e.body).toBe(201);
    const status = await until('sync success', async () => {
      const s = await t.call({ method: 'GET', url: '/sync/acme/users?provider_config_key=slack' });
      expect(s.statusCode, s.body).toBe(200);
      return s.json().status === 'success' && s.json();
    });
    expect(status.records_count).toBe(450);
    const page = await t.call({ method: 'GET', url: '/records?model=SlackUser&limit=1000', headers: { 'connection-id': 'acme', 'provider-config-key': 'slack' } });
    expect(page.statusCode, page.body).toBe(200);
    expect(page.json().records).toHaveLength(450);
    expect(page.json().records[0]._nango_metadata.last_action).toBe('ADDED');
  });

  it('runs send-message and returns the output', async () => {
    await t.call({ method: 'POST', url: '/integration/slack/functions', payload: { name: 'send-message' } });
    const channel = [...slack.state.channels.values()][0]!;
    const r = await t.call({ method: 'POST', url: '/action/trigger', payload: { connection_id: 'acme', provider_config_key: 'slack', action_name: 'send-message', input: { channel: channel.id, text: 'hello' } } });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ success: true, action_name: 'send-message', output: { ok: true, text: 'hello' } });
  });
});
