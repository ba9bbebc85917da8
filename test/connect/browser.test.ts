/**
 * The hosted Connect flow in a real browser (Debian's chromium driven by playwright-core): a "SaaS product" page on
 * its own origin opens the Connect page in a popup (or in the same tab, redirect mode), the user signs in and consents
 * at the OAuth fixture, and the result reaches the product page by postMessage (or by redirect).
 *
 * Needs /usr/bin/chromium; `.ci/run` installs it (Debian package `chromium`).
 */
import { existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type Browser, type BrowserContext, chromium, type Page, type Request } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DEFAULT_CLIENT, type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { createFixtureIntegration, tokenWorks } from '../helpers/oauth.js';

const CHROMIUM = '/usr/bin/chromium';
const TEST_TIMEOUT = 60_000;
const SCREENSHOT_LIST = '/tmp/terapi-connect-list.png';
const SCREENSHOT_SUCCESS = '/tmp/terapi-connect-success.png';

let t: TestApp;
let server: OAuthServer;
let browser: Browser;
let saas: Server;
let serverUrl: string;
let saasOrigin: string;
/** The connect link the SaaS page embeds in its next render (set by each test before it opens the page). */
let saasLink = '';

async function freePort(): Promise<number> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', resolve);
  });
  const { port } = probe.address() as AddressInfo;
  await new Promise((r) => probe.close(r));
  return port;
}

const html = (title: string, body: string) =>
  `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${title}</title></head><body>${body}</body></html>`;

/** The product page: opens the Connect page in a popup or in the same tab, records every message it receives. */
function saasPage(link: string): string {
  return html(
    'Acme SaaS',
    `<h1>Acme SaaS</h1>
<button id="connect-popup" type="button">Connect an account</button>
<button id="connect-here" type="button">Connect in this tab</button>
<script>
window.received = [];
var link = ${JSON.stringify(link).replace(/</g, '\\u003c')};
window.addEventListener('message', function (e) { window.received.push({ origin: e.origin, data: e.data }); });
document.getElementById('connect-popup').addEventListener('click', function () { window.open(link, 'terapi', 'popup,width=500,height=700'); });
document.getElementById('connect-here').addEventListener('click', function () { window.location.assign(link); });
</script>`,
  );
}

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: this end-to-end test drives Debian's chromium. .ci/run installs it (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium).`,
    );
  }
  const port = await freePort();
  serverUrl = `http://127.0.0.1:${port}`;
  server = await startOAuthServer({ clients: [{ ...DEFAULT_CLIENT, redirect_uris: [`${serverUrl}/oauth/callback`] }] });
  t = await createTestApp({ config: { serverUrl } });
  await t.app.listen({ host: '127.0.0.1', port });
  await createFixtureIntegration(t, server);

  saas = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://saas').pathname;
    const send = (status: number, body: string) =>
      res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' }).end(body);
    if (path === '/') return send(200, saasPage(saasLink));
    if (path === '/done') return send(200, html('Connected', '<h1 id="done">Thanks, your account is connected.</h1>'));
    return send(404, html('Not found', '<h1>Not found</h1>'));
  });
  await new Promise<void>((r) => saas.listen(0, '127.0.0.1', r));
  saasOrigin = `http://127.0.0.1:${(saas.address() as AddressInfo).port}`;

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});

afterAll(async () => {
  await browser?.close();
  if (saas) await new Promise((r) => saas.close(r));
  await server?.close();
  await t?.close();
});

interface Visit {
  url: string;
  referer: string | undefined;
  request: Request;
  /** HTTP status, once the response (or the redirect) arrived */
  status?: number;
}

/** A fresh browser context that records every request (redirect hops included) and every committed top-level URL. */
async function recordedContext() {
  const context = await browser.newContext();
  const requests: Visit[] = [];
  const navigations: string[] = [];
  context.on('request', (request) => requests.push({ url: request.url(), referer: request.headers()['referer'], request }));
  context.on('response', (response) => {
    const visit = requests.find((v) => v.request === response.request());
    if (visit) visit.status = response.status();
  });
  const watch = (page: Page) =>
    page.on('framenavigated', (frame) => {
      if (frame === page.mainFrame()) navigations.push(frame.url());
    });
  context.on('page', watch);
  return { context, requests, navigations };
}

async function newSession(endUserId: string, body: Record<string, unknown>) {
  const r = await t.call({
    method: 'POST',
    url: '/connect/sessions',
    payload: { end_user: { id: endUserId, email: `${endUserId}@example.com` }, allowed_integrations: ['fixture'], ...body },
  });
  expect(r.statusCode, r.body).toBe(201);
  const data = r.json().data as { token: string; connect_link: string };
  expect(data.connect_link).toBe(`${serverUrl}/connect?session_token=${encodeURIComponent(data.token)}`);
  return data;
}

async function connectionsOf(endUserId: string): Promise<{ id: string; provider_config_key: string }[]> {
  const r = await t.call({ method: 'GET', url: `/connection?end_user_id=${encodeURIComponent(endUserId)}` });
  expect(r.statusCode, r.body).toBe(200);
  return r.json().connections;
}

type Received = { origin: string; data: Record<string, unknown> }[];
const receivedBy = (page: Page) => page.evaluate(() => (globalThis as unknown as { received: Received }).received);

/**
 * The session token appears in exactly one request, the connect link itself, which answers 303 to the bare
 * `/connect`; it never reaches a committed page URL nor a Referer. Other secrets appear in no URL at all.
 */
async function expectNoSecretsInUrls(rec: { requests: Visit[]; navigations: string[] }, sessionToken: string, otherSecrets: string[] = []) {
  const carrying = rec.requests.filter((v) => v.url.includes(sessionToken) || v.url.includes(encodeURIComponent(sessionToken)));
  expect(carrying.map((v) => v.url)).toEqual([`${serverUrl}/connect?session_token=${encodeURIComponent(sessionToken)}`]);
  expect(carrying[0]!.status).toBe(303);
  expect(carrying[0]!.request.redirectedTo()?.url()).toBe(`${serverUrl}/connect`);

  expect(rec.navigations.length).toBeGreaterThan(0);
  for (const url of rec.navigations) expect(url, 'a page URL carries the session token').not.toContain(sessionToken);
  for (const v of rec.requests) expect(v.referer ?? '', `Referer of ${v.url}`).not.toContain(sessionToken);
  for (const secret of otherSecrets) {
    expect(secret.length).toBeGreaterThan(8);
    for (const url of [...rec.navigations, ...rec.requests.map((v) => v.url)]) expect(url, 'a URL carries a token').not.toContain(secret);
    for (const v of rec.requests) expect(v.referer ?? '', `Referer of ${v.url}`).not.toContain(secret);
  }
}

/** In the Connect page (popup or tab): pick the fixture integration, sign in, press a consent button. */
async function runFixtureFlow(page: Page, consent: 'allow' | 'deny', screenshotList?: string) {
  await page.waitForURL(`${serverUrl}/connect`);
  const item = page.locator('a.item[href="/connect/i/fixture"]');
  await item.waitFor();
  expect(await page.locator('a.item').count()).toBe(1);
  if (screenshotList) await page.screenshot({ path: screenshotList, fullPage: true });
  await item.click();
  await page.locator('#login').fill('user-1');
  await page.locator('#login-submit').click();
  await page.locator(consent === 'allow' ? '#consent-allow' : '#consent-deny').click();
}

/** The product page opens the connect link in a popup, as a SaaS front end would. */
async function openConnectPopup(context: BrowserContext, connectLink: string) {
  saasLink = connectLink;
  const product = await context.newPage();
  await product.goto(`${saasOrigin}/`);
  const [popup] = await Promise.all([context.waitForEvent('page'), product.locator('#connect-popup').click()]);
  return { product, popup };
}

describe('the Connect page in a browser', () => {
  it(
    'popup mode: connects through the OAuth fixture and tells the opener, at its origin only once',
    async () => {
      const endUser = 'browser-popup';
      const s = await newSession(endUser, { allowed_origin: saasOrigin });
      const rec = await recordedContext();
      try {
        const { product, popup } = await openConnectPopup(rec.context, s.connect_link);
        const closed = popup.waitForEvent('close', { timeout: 120_000 });
        closed.catch(() => {}); // awaited below; this only keeps an early failure from becoming an unhandled rejection

        await runFixtureFlow(popup, 'allow', SCREENSHOT_LIST);
        const result = popup.locator('#result[data-connection-id]');
        await result.waitFor();
        // The success page closes itself 1.5 s after it loads: take the picture right away.
        await popup.screenshot({ path: SCREENSHOT_SUCCESS, fullPage: true });
        const connectionId = (await result.getAttribute('data-connection-id'))!;
        expect(connectionId).toBeTruthy();
        expect(popup.url()).toMatch(new RegExp(`^${serverUrl}/oauth/callback\\?`));

        // The popup closes itself; by then the message has long been delivered, and only once.
        await closed;
        await expect.poll(() => receivedBy(product)).toHaveLength(1);
        const received = await receivedBy(product);
        expect(received).toHaveLength(1);
        expect(received[0]!.origin).toBe(serverUrl);
        expect(received[0]!.data).toMatchObject({
          type: 'terapi:connect',
          event: 'connection_created',
          connection_id: connectionId,
          provider_config_key: 'fixture',
        });
        expect(product.url()).toBe(`${saasOrigin}/`);

        expect((await connectionsOf(endUser)).map((c) => c.id)).toEqual([connectionId]);
        const tokenRes = await fetch(`${serverUrl}/auth/token/fixture/${encodeURIComponent(connectionId)}`, {
          headers: { authorization: `Bearer ${t.env.key}` },
        });
        expect(tokenRes.status).toBe(200);
        const token = (await tokenRes.json()) as { access_token: string; refresh_token?: string };
        expect(await tokenWorks(server, token.access_token)).toBe(true);

        await expectNoSecretsInUrls(rec, s.token, [token.access_token, ...(token.refresh_token ? [token.refresh_token] : [])]);
      } finally {
        await rec.context.close();
      }
    },
    TEST_TIMEOUT,
  );

  it(
    'popup mode: denied consent shows the error, tells the opener and stores nothing',
    async () => {
      const endUser = 'browser-deny';
      const s = await newSession(endUser, { allowed_origin: saasOrigin });
      const rec = await recordedContext();
      try {
        const { product, popup } = await openConnectPopup(rec.context, s.connect_link);

        await runFixtureFlow(popup, 'deny');
        await popup.locator('#result[data-error="denied"]').waitFor();
        expect(popup.url()).toMatch(new RegExp(`^${serverUrl}/oauth/callback\\?`));
        expect(await connectionsOf(endUser)).toEqual([]);
        await expectNoSecretsInUrls(rec, s.token);

        await expect
          .poll(() => receivedBy(product), { timeout: 60_000, message: 'the opener never received the error message' })
          .toHaveLength(1);
        const received = await receivedBy(product);
        expect(received[0]!.origin).toBe(serverUrl);
        expect(received[0]!.data).toMatchObject({ type: 'terapi:connect', event: 'error', error_type: 'denied' });
      } finally {
        await rec.context.close();
      }
    },
    TEST_TIMEOUT,
  );

  it(
    'redirect mode: the same tab ends on the redirect_url with the connection id',
    async () => {
      const endUser = 'browser-redirect';
      const s = await newSession(endUser, { redirect_url: `${saasOrigin}/done` });
      const rec = await recordedContext();
      try {
        saasLink = s.connect_link;
        const tab = await rec.context.newPage();
        let popups = 0;
        rec.context.on('page', () => popups++);
        await tab.goto(`${saasOrigin}/`);
        await tab.locator('#connect-here').click();

        await runFixtureFlow(tab, 'allow');
        await tab.waitForURL(`${saasOrigin}/done?**`);
        await tab.locator('#done').waitFor();
        const done = new URL(tab.url());
        expect(done.origin + done.pathname).toBe(`${saasOrigin}/done`);
        expect([...done.searchParams.keys()].sort()).toEqual(['connection_id', 'provider_config_key']);
        expect(done.searchParams.get('provider_config_key')).toBe('fixture');
        const connectionId = done.searchParams.get('connection_id');
        expect((await connectionsOf(endUser)).map((c) => c.id)).toEqual([connectionId]);
        expect(popups).toBe(0);
        // The tab went through the success page on its way to /done.
        expect(rec.navigations.some((u) => u.startsWith(`${serverUrl}/oauth/callback?`))).toBe(true);

        const tokenRes = await fetch(`${serverUrl}/auth/token/fixture/${encodeURIComponent(connectionId!)}`, {
          headers: { authorization: `Bearer ${t.env.key}` },
        });
        expect(tokenRes.status).toBe(200);
        const token = (await tokenRes.json()) as { access_token: string };
        expect(await tokenWorks(server, token.access_token)).toBe(true);
        await expectNoSecretsInUrls(rec, s.token, [token.access_token]);
      } finally {
        await rec.context.close();
      }
    },
    TEST_TIMEOUT,
  );
});
