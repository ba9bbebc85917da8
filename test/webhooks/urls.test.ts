import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

/** Webhook URLs under the default egress policy (no private targets), as in production. */
let t: TestApp;
let allowListed: TestApp;

beforeAll(async () => {
  t = await createTestApp({ config: { egress: { allowPrivateNetworks: false, allowedHosts: [], timeoutMs: 5_000 } } });
  allowListed = await createTestApp({
    db: t.db,
    config: { egress: { allowPrivateNetworks: false, allowedHosts: ['localhost'], timeoutMs: 5_000 } },
  });
});
afterAll(async () => {
  await allowListed?.close();
  await t?.close();
});

const put = (app: TestApp, urls: string[]) => app.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls } });

describe('webhook URLs the egress policy would refuse', () => {
  it.each([
    ['http://127.0.0.1:8080/hooks', /127\.0\.0\.1 \(loopback address\)/],
    ['http://[::1]/hooks', /::1 \(loopback address\)/],
    ['http://10.1.2.3/hooks', /10\.1\.2\.3 \(private address\)/],
    ['http://192.168.1.10/hooks', /private address/],
    ['http://169.254.169.254/latest/meta-data', /link-local \(cloud metadata\) address/],
    ['http://[fe80::1]/hooks', /link-local address/],
    ['http://[::ffff:127.0.0.1]/hooks', /IPv4-embedded loopback address/],
    ['http://localhost:3000/hooks', /localhost \(resolves to (127\.0\.0\.1|::1): loopback address\)/],
  ])('%s is refused at once, naming the field, the reason and the setting', async (url, reason) => {
    const r = await put(t, [url]);
    expect(r.statusCode, r.body).toBe(400);
    const body = r.json();
    expect(body.error).toBe('invalid_request');
    expect(body.message).toMatch(/^urls\.0: /);
    expect(body.message).toMatch(reason);
    expect(body.message).toContain('TERAPI_EGRESS_ALLOW_PRIVATE');
    expect(body.details[0]).toMatchObject({ field: 'urls.0' });
    // Nothing written: no settings, no secret created.
    expect((await t.call({ method: 'GET', url: '/environment/webhooks' })).json()).toEqual({
      urls: [],
      secret_hint: null,
      previous_secret_expires_at: null,
    });
  });

  it('non-http(s) schemes are refused naming the field', async () => {
    for (const url of ['ftp://example.com/x', 'file:///etc/passwd', 'gopher://example.com/']) {
      const r = await put(t, [url]);
      expect(r.statusCode, r.body).toBe(400);
      expect(r.json().message).toMatch(/urls\.0/);
    }
  });

  it('the refused URL is named by its index; public addresses are accepted', async () => {
    const r = await put(t, ['https://203.0.114.10/hooks', 'http://127.0.0.2/hooks']);
    expect(r.statusCode, r.body).toBe(400);
    expect(r.json().message).toMatch(/^urls\.1: /);
    expect(r.json().details.map((d: { field: string }) => d.field)).toEqual(['urls.1']);
    const ok = await put(t, ['https://203.0.114.10/hooks']);
    expect(ok.statusCode, ok.body).toBe(200);
    expect(ok.json().urls).toEqual(['https://203.0.114.10/hooks']);
  });

  it('a host on TERAPI_EGRESS_ALLOWED_HOSTS is accepted', async () => {
    const r = await put(allowListed, ['http://localhost:3000/hooks']);
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json().urls).toEqual(['http://localhost:3000/hooks']);
  });
});
