import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, defaultTestConfig, type TestApp } from '../helpers/app.js';

let t: TestApp;
/** The same database and environment under the production egress default (no private networks). */
let strict: TestApp;
let fakeApi: Server;
const ORIGIN = 'https://app.example.com';

beforeAll(async () => {
  // A provider API that accepts the key "good-key".
  fakeApi = createServer((req, res) => {
    const ok = req.headers.authorization === 'Bearer good-key';
    res.writeHead(ok ? 200 : 401, { 'content-type': 'application/json' }).end('{}');
  });
  await new Promise<void>((r) => fakeApi.listen(0, '127.0.0.1', r));
  const fakeApiUrl = `http://127.0.0.1:${(fakeApi.address() as AddressInfo).port}`;
  t = await createTestApp();
  strict = await createTestApp({
    db: t.db,
    vault: t.vault,
    config: { egress: { ...defaultTestConfig.egress, allowPrivateNetworks: false } },
  });
  for (const payload of [
    { provider_config_key: 'gh-a', provider: 'github', oauth_client_id: 'a', oauth_client_secret: 's' },
    { provider_config_key: 'gh-b', provider: 'github', oauth_client_id: 'b', oauth_client_secret: 's' },
    { provider_config_key: 'gh-work', provider: 'github', oauth_client_id: 'w', oauth_client_secret: 's', display_name: 'Work GitHub' },
    { provider_config_key: 'gh-none', provider: 'github' },
    { provider_config_key: 'sendgrid', provider: 'sendgrid', api_base_url: fakeApiUrl },
    // Accepted here because private egress is allowed; the strict app would refuse to create it.
    {
      provider_config_key: 'gen',
      provider: 'oauth2',
      oauth_client_id: 'c',
      oauth_client_secret: 's',
      authorization_url: 'http://127.0.0.1:9/authorize',
      token_url: 'http://127.0.0.1:9/token',
    },
  ]) {
    const r = await t.call({ method: 'POST', url: '/integration', payload });
    expect(r.statusCode, r.body).toBe(200);
  }
});
afterAll(async () => {
  await strict?.close();
  await t?.close();
  await new Promise((r) => fakeApi?.close(r));
});

async function openSession(body: Record<string, unknown> = {}) {
  const r = await t.call({
    method: 'POST',
    url: '/connect/sessions',
    payload: { end_user: { id: 'u1' }, allowed_origin: ORIGIN, ...body },
  });
  expect(r.statusCode, r.body).toBe(201);
  const link = new URL(r.json().data.connect_link);
  const open = await t.app.inject({ method: 'GET', url: link.pathname + link.search });
  expect(open.statusCode).toBe(303);
  return { token: r.json().data.token as string, cookie: String(open.headers['set-cookie']).split(';')[0]! };
}

const get = (app: TestApp, cookie: string, url: string) => app.app.inject({ method: 'GET', url, headers: { cookie } });
const post = (cookie: string, url: string, form: string) =>
  t.app.inject({ method: 'POST', url, headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' }, payload: form });

/** An HTML error page that also posts the error event to the session's opener origin. */
function expectErrorPage(
  r: { statusCode: number; headers: Record<string, unknown>; body: string },
  status: number,
  origin: string | null = ORIGIN,
) {
  expect(r.statusCode, r.body).toBe(status);
  expect(String(r.headers['content-type'])).toContain('text/html');
  expect(r.body).toContain('id="result"');
  expect(r.body).toContain('"event":"error"');
  if (origin) expect(r.body).toContain(JSON.stringify(origin));
}

describe('the Connect page list', () => {
  it('shows only integrations an end user can complete, each under a distinct name', async () => {
    const { cookie } = await openSession();
    const list = await get(t, cookie, '/connect');
    expect(list.statusCode).toBe(200);
    const names = [...list.body.matchAll(/<a class="item" href="\/connect\/i\/([^"]+)">.*?<span><span>([^<]+)<\/span>/g)].map((m) => [
      m[1],
      m[2],
    ]);
    expect(names).toEqual([
      ['gh-a', 'GitHub (gh-a)'],
      ['gh-b', 'GitHub (gh-b)'],
      ['gh-work', 'Work GitHub'],
      ['sendgrid', 'SendGrid'],
      ['gen', 'OAuth 2.0 (generic)'],
    ]);
    // Reached directly, the integration without a client still explains itself.
    expectErrorPage(await get(t, cookie, '/connect/i/gh-none'), 409);
  });

  it('titles the form and the success page with the integration display name', async () => {
    await t.call({ method: 'PATCH', url: '/integrations/sendgrid', payload: { display_name: 'Mail (SendGrid)' } });
    const { cookie } = await openSession();
    const form = await get(t, cookie, '/connect/i/sendgrid');
    expect(form.body).toContain('<h1>Connect Mail (SendGrid)</h1>');
    const done = await post(cookie, '/connect/i/sendgrid', 'api_key=good-key');
    expect(done.statusCode, done.body).toBe(200);
    expect(done.body).toContain('Mail (SendGrid) is connected.');
  });
});

describe('cookies, headers and failures on the Connect page', () => {
  it('answers a malformed cookie with the expired-link page, not a 500', async () => {
    const r = await t.app.inject({ method: 'GET', url: '/connect', headers: { cookie: 'terapi_connect=%E0%A4%A' } });
    expectErrorPage(r, 401, null);
  });

  it('sends a nonce CSP matching the page, framing protection, and keeps the opener for popups', async () => {
    const { cookie } = await openSession();
    const r = await get(t, cookie, '/connect');
    const csp = String(r.headers['content-security-policy']);
    const script = /script-src 'nonce-([^']+)'/.exec(csp)?.[1];
    const style = /style-src 'nonce-([^']+)'/.exec(csp)?.[1];
    expect(script && style).toBeTruthy();
    expect(csp).toContain("default-src 'none'");
    expect(r.body).toContain(`<style nonce="${style}">`);
    const error = await get(t, cookie, '/connect/i/gh-none');
    const errorScript = /script-src 'nonce-([^']+)'/.exec(String(error.headers['content-security-policy']))?.[1];
    expect(errorScript).not.toBe(script);
    expect(error.body).toContain(`<script nonce="${errorScript}">`);
    expect(r.headers['x-content-type-options']).toBe('nosniff');
    expect(r.headers['referrer-policy']).toBe('no-referrer');
    expect(r.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(r.headers['cross-origin-opener-policy']).toBeUndefined();
    expect(r.headers['cache-control']).toBe('no-store');
  });

  it('renders a request the route refuses as an HTML error page that tells the opener', async () => {
    const { cookie } = await openSession();
    expectErrorPage(await get(t, cookie, '/connect/i/bad%20key'), 400);
    expectErrorPage(await post(cookie, '/connect/i/sendgrid', 'api_key=a%00b'), 400);
    expectErrorPage(await post(cookie, '/connect/i/sendgrid', `api_key=${'x'.repeat(70 * 1024)}`), 413);
    expectErrorPage(await get(t, cookie, `/oauth/connect/sendgrid?x=${'y'.repeat(3000)}`), 400);
    expectErrorPage(await t.app.inject({ method: 'GET', url: `/oauth/callback?state=${'s'.repeat(600)}` }), 400, null);
  });

  it('refuses a typed API key that cannot be sent in a header, on the form', async () => {
    const { cookie } = await openSession();
    const r = await post(cookie, '/connect/i/sendgrid', `api_key=${encodeURIComponent('good-key…')}`);
    expect(r.statusCode, r.body).toBe(400);
    expect(r.body).toContain('aria-invalid="true"');
    expect(r.body).toContain('U+2026');
  });

  it('renders a plain-http OAuth server under the production egress policy as an HTML error page, never raw JSON', async () => {
    const { cookie } = await openSession();
    const r = await get(strict, cookie, '/connect/i/gen');
    expectErrorPage(r, 409);
    expect(r.body).toContain('does not use https');
  });

  it('renders a failure Terapi did not foresee as an HTML page too, logged with its request id', async () => {
    const { cookie } = await openSession();
    // A client secret that no key can decrypt any more.
    await t.db.database.db.execute(sql`UPDATE integrations SET oauth_client_secret_enc = 'v1:nokey:garbage' WHERE unique_key = 'gh-b'`);
    const r = await get(t, cookie, '/connect/i/gh-b');
    expectErrorPage(r, 500);
    const requestId = /request ([0-9a-f-]{36})/.exec(r.body)?.[1];
    expect(requestId).toBeTruthy();
    expect(t.logs.some((l) => l.includes(requestId!) && l.includes('"level":50'))).toBe(true);
  });
});
