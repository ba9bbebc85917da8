import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
let fakeApi: Server;

beforeAll(async () => {
  fakeApi = createServer((req, res) => {
    const ok = req.headers.authorization === 'Bearer good-key';
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => fakeApi.listen(0, '127.0.0.1', r));
  t = await createTestApp();
  for (const payload of [
    { provider_config_key: 'zendesk', provider: 'zendesk', oauth_client_id: 'z', oauth_client_secret: 's' },
    { provider_config_key: 'sendgrid', provider: 'sendgrid', api_base_url: `http://127.0.0.1:${(fakeApi.address() as AddressInfo).port}` },
  ]) {
    const r = await t.call({ method: 'POST', url: '/integration', payload });
    expect(r.statusCode, r.body).toBe(200);
  }
});
afterAll(async () => {
  await t?.close();
  await new Promise((r) => fakeApi?.close(r));
});

const createSession = (body: Record<string, unknown>) =>
  t.call({ method: 'POST', url: '/connect/sessions', payload: { end_user: { id: 'u1' }, ...body } });

describe('allowed_origin', () => {
  it('refuses plain http off localhost, bad ports and anything with a path, naming the field', async () => {
    for (const origin of [
      'http://app.example.com',
      'https://app.example.com:99999',
      'https://app.example.com:abc',
      'https://app.example.com/path',
      'https://app.example.com?x=1',
      'https://user@app.example.com',
      'ftp://app.example.com',
      'app.example.com',
      'https://app.example.com:0',
      'https://*.example.com',
      'https://app..example.com',
    ]) {
      const r = await createSession({ allowed_origin: origin });
      expect(r.statusCode, `${origin}: ${r.body}`).toBe(400);
      expect(r.json().details[0].field).toBe('allowed_origin');
    }
    // The same rule as redirect_url.
    const redirect = await createSession({ redirect_url: 'http://app.example.com/done' });
    expect(redirect.statusCode).toBe(400);
    expect(redirect.json().details[0].field).toBe('redirect_url');
  });

  it('accepts https origins and http on the developer machine, stored in canonical form', async () => {
    for (const [given, stored] of [
      ['https://app.example.com', 'https://app.example.com'],
      ['https://App.Example.com:8443/', 'https://app.example.com:8443'],
      ['http://localhost:3000', 'http://localhost:3000'],
      ['http://127.0.0.1:5173', 'http://127.0.0.1:5173'],
      ['http://[::1]:8080', 'http://[::1]:8080'],
    ]) {
      const r = await createSession({ allowed_origin: given });
      expect(r.statusCode, `${given}: ${r.body}`).toBe(201);
      const session = await t.app.inject({
        method: 'GET',
        url: '/connect/session',
        headers: { authorization: `Bearer ${r.json().data.token}` },
      });
      expect(session.json().data.allowed_origin).toBe(stored);
    }
  });
});

describe('integrations_config_defaults', () => {
  it('checks connection_config defaults against the catalog at creation, naming the field', async () => {
    const bad = await createSession({
      integrations_config_defaults: { zendesk: { connection_config: { subdomain: 'Not A Subdomain!' } } },
    });
    expect(bad.statusCode, bad.body).toBe(400);
    expect(bad.json().details[0].field).toBe('integrations_config_defaults.zendesk.connection_config.subdomain');
    expect(bad.json().message).toContain('integrations_config_defaults.zendesk.connection_config.subdomain');
    const unknown = await createSession({ integrations_config_defaults: { nope: { connection_config: {} } } });
    expect(unknown.statusCode).toBe(400);
    expect(unknown.json().details[0].field).toBe('integrations_config_defaults.nope');
  });

  it('accepts valid defaults and partial ones (the user types the rest)', async () => {
    expect(
      (await createSession({ integrations_config_defaults: { zendesk: { connection_config: { subdomain: 'acme' } } } })).statusCode,
    ).toBe(201);
    expect((await createSession({ integrations_config_defaults: { zendesk: { connection_config: {} } } })).statusCode).toBe(201);
  });
});

describe('one session, several connections', () => {
  it('lets one session create a new connection each time until it ends', async () => {
    const r = await createSession({ allowed_integrations: ['sendgrid'] });
    const token = r.json().data.token as string;
    const open = await t.app.inject({ method: 'GET', url: `/connect?session_token=${token}` });
    const cookie = String(open.headers['set-cookie']).split(';')[0]!;
    const submit = () =>
      t.app.inject({
        method: 'POST',
        url: '/connect/i/sendgrid',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        payload: 'api_key=good-key',
      });
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      const done = await submit();
      expect(done.statusCode, done.body).toBe(200);
      ids.push(/data-connection-id="([^"]+)"/.exec(done.body)![1]!);
    }
    expect(new Set(ids).size).toBe(2);
    const list = await t.call({ method: 'GET', url: '/connection?provider_config_key=sendgrid&end_user_id=u1' });
    expect(
      list
        .json()
        .connections.map((c: { id: string }) => c.id)
        .sort(),
    ).toEqual([...ids].sort());
    // Ended by its owner, the session creates nothing more.
    expect(
      (await t.app.inject({ method: 'DELETE', url: '/connect/session', headers: { authorization: `Bearer ${token}` } })).statusCode,
    ).toBe(204);
    expect((await submit()).statusCode).toBe(401);
  });
});
