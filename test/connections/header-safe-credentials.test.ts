import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
  for (const payload of [
    { provider_config_key: 'github', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 'secret' },
    { provider_config_key: 'sendgrid', provider: 'sendgrid' },
    { provider_config_key: 'twilio', provider: 'twilio' },
  ]) {
    const r = await t.call({ method: 'POST', url: '/integration', payload });
    expect(r.statusCode, r.body).toBe(200);
  }
});
afterAll(async () => t?.close());

const exists = async (id: string, key: string) =>
  (await t.call({ method: 'GET', url: `/connection/${id}?provider_config_key=${key}` })).statusCode === 200;

describe('imported credentials must fit in an HTTP header', () => {
  it('refuses an access token with an ellipsis (the shortened "gho_…" of an example) and stores nothing', async () => {
    const r = await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: 'ellipsis', provider_config_key: 'github', credentials: { access_token: 'gho_…', refresh_token: 'ghr_x' } },
    });
    expect(r.statusCode, r.body).toBe(400);
    expect(r.json().details).toEqual([{ field: 'credentials.access_token', message: expect.stringContaining('U+2026') }]);
    expect(r.json().message).toContain('credentials.access_token');
    expect(await exists('ellipsis', 'github')).toBe(false);
  });

  it('refuses control characters and surrounding spaces, on the native and the Nango-compatible import', async () => {
    for (const token of ['gho_abc\r\nX-Injected: 1', 'gho_\u0007bell', ' gho_padded ', 'gho_caf\u00e9']) {
      const native = await t.call({
        method: 'POST',
        url: '/connection',
        payload: { connection_id: 'ctl', provider_config_key: 'github', credentials: { access_token: token } },
      });
      expect(native.statusCode, native.body).toBe(400);
      expect(native.json().details[0].field).toBe('credentials.access_token');
      const nango = await t.call({
        method: 'POST',
        url: '/connections',
        payload: { connection_id: 'ctl', provider_config_key: 'github', credentials: { type: 'OAUTH2', access_token: token } },
      });
      expect(nango.statusCode, nango.body).toBe(400);
      expect(nango.json().details[0].field).toBe('credentials.access_token');
    }
    expect(await exists('ctl', 'github')).toBe(false);
  });

  it('refuses an API key that goes into a header verbatim', async () => {
    const r = await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: 'sg', provider_config_key: 'sendgrid', credentials: { api_key: 'SG.“quoted”' } },
    });
    expect(r.statusCode, r.body).toBe(400);
    expect(r.json().details[0].field).toBe('credentials.api_key');
    expect(await exists('sg', 'sendgrid')).toBe(false);
  });

  it('accepts any text inside base64 basic auth, and ordinary tokens', async () => {
    const basic = await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: 'tw', provider_config_key: 'twilio', credentials: { username: 'AC1', password: 'pässwörd…' } },
    });
    expect(basic.statusCode, basic.body).toBe(200);
    const ok = await t.call({
      method: 'POST',
      url: '/connection',
      payload: {
        connection_id: 'ok',
        provider_config_key: 'github',
        credentials: { access_token: 'gho_16C7e42F292c6912E7710c838347Ae178B4a' },
      },
    });
    expect(ok.statusCode, ok.body).toBe(200);
    const token = await t.call({ method: 'GET', url: '/auth/token/github/ok' });
    expect(token.json().access_token).toBe('gho_16C7e42F292c6912E7710c838347Ae178B4a');
  });
});
