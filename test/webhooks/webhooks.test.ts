import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { connectFake, enable, until, waitForRun } from '../helpers/syncs.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';

interface Received {
  headers: Record<string, string | string[] | undefined>;
  raw: string;
  body: Record<string, unknown>;
  /** Secrets (by index in `secrets`) whose signature verified. */
  verifiedWith: number[];
}

/**
 * A SaaS backend's webhook endpoint: verifies the signature the way the README tells receivers
 * to (HMAC-SHA256 over "<t>.<raw body>", constant-time compare, 5-minute tolerance).
 */
class Receiver {
  server: Server;
  url = '';
  received: Received[] = [];
  secrets: string[] = [];
  /** Answer this status instead of 200 while set (a receiver that is down). */
  failWith: number | null = null;
  attempts = 0;

  constructor() {
    this.server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
      req.on('end', () => {
        this.attempts++;
        if (this.failWith) {
          res.writeHead(this.failWith).end('down for maintenance');
          return;
        }
        const header = String(req.headers['terapi-signature'] ?? '');
        const t = Number(/(?:^|,)t=(\d+)/.exec(header)?.[1]);
        const sigs = [...header.matchAll(/v1=([0-9a-f]+)/g)].map((m) => m[1]!);
        const fresh = Math.abs(Date.now() / 1000 - t) < 300;
        const verifiedWith = this.secrets.flatMap((secret, i) => {
          const expected = createHmac('sha256', secret).update(`${t}.${raw}`).digest('hex');
          return fresh && sigs.some((s) => s.length === expected.length && timingSafeEqual(Buffer.from(s), Buffer.from(expected)))
            ? [i]
            : [];
        });
        this.received.push({ headers: req.headers, raw, body: JSON.parse(raw), verifiedWith });
        res.writeHead(verifiedWith.length ? 200 : 401).end();
      });
    });
  }
  async start() {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hooks`;
  }
  of(type: string) {
    return this.received.filter((r) => r.body.type === type);
  }
}

let t: TestApp;
let gh: FakeGithub;
const rx = new Receiver();
const KEY = 'github';
const CONN = 'acme';

const deliveries = async (query = '') => {
  const r = await t.call({ method: 'GET', url: `/environment/webhooks/deliveries${query}` });
  expect(r.statusCode, r.body).toBe(200);
  return r.json().deliveries as {
    id: string;
    event_id: string;
    type: string;
    operation: string;
    status: string;
    attempts: number;
    last_status_code: number | null;
    last_error: string | null;
  }[];
};

beforeAll(async () => {
  gh = await startFakeGithub();
  gh.controls.seed({ repos: 1, issuesPerRepo: 12 });
  await rx.start();
  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true, webhooks: { maxAttempts: 4, backoffMs: 150 } } });
});
afterAll(async () => {
  await t?.close();
  await gh?.close();
  await new Promise((r) => rx.server.close(r));
});

describe('webhooks to the SaaS backend', () => {
  it('setting the URLs creates a signing secret, shown once', async () => {
    const bad = await t.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls: ['ftp://x'] } });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().message).toMatch(/urls\.0/);
    const r = await t.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls: [rx.url] } });
    expect(r.statusCode, r.body).toBe(200);
    const { secret, secret_hint, urls } = r.json();
    expect(secret).toMatch(/^whsec_[A-Za-z0-9_-]{40,}$/);
    expect(secret_hint).toBe(`${secret.slice(0, 10)}…`);
    expect(urls).toEqual([rx.url]);
    rx.secrets = [secret];
    const again = await t.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls: [rx.url] } });
    expect(again.json().secret).toBeUndefined();
    const get = await t.call({ method: 'GET', url: '/environment/webhooks' });
    expect(get.json()).toEqual({ urls: [rx.url], secret_hint, previous_secret_expires_at: null });
  });

  it('auth and sync events arrive signed, with counts, model and modified_after', async () => {
    await connectFake(t, { key: KEY, provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: CONN });
    await enable(t, KEY, 'issues');
    await waitForRun(t, KEY, CONN, 'issues');
    const sync = await until('the sync webhook', async () => rx.of('sync')[0]);
    expect(sync.verifiedWith).toEqual([0]);
    expect(sync.headers['terapi-event']).toBe('sync');
    expect(sync.headers['terapi-attempt']).toBe('1');
    expect(sync.headers['terapi-webhook-id']).toMatch(/^[0-9a-f-]{36}$/);
    expect(sync.body).toMatchObject({
      type: 'sync',
      operation: 'finished',
      success: true,
      connectionId: CONN,
      providerConfigKey: KEY,
      syncName: 'issues',
      model: 'GithubIssue',
      syncType: 'incremental',
      responseResults: { added: 12, updated: 0, deleted: 0 },
      modifiedAfter: expect.any(String),
    });
    // modifiedAfter fetches exactly that run's changes.
    const page = await t.call({
      method: 'GET',
      url: `/records?model=GithubIssue&modified_after=${encodeURIComponent(String(sync.body.modifiedAfter))}`,
      headers: { 'connection-id': CONN, 'provider-config-key': KEY },
    });
    expect(page.json().records).toHaveLength(12);
    expect((await deliveries('?status=delivered')).length).toBeGreaterThanOrEqual(1);
  });

  it('an end user connecting through the Connect page is announced with an auth creation event', async () => {
    // SendGrid verifies API keys with a GET; its API is played by a server that accepts any key.
    const sendgrid = createServer((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"username":"acme"}'));
    await new Promise<void>((r) => sendgrid.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(sendgrid.address() as AddressInfo).port}`;
      expect(
        (
          await t.call({
            method: 'POST',
            url: '/integration',
            payload: { provider_config_key: 'sendgrid', provider: 'sendgrid', api_base_url: base },
          })
        ).statusCode,
      ).toBe(200);
      const session = await t.call({
        method: 'POST',
        url: '/connect/sessions',
        payload: { end_user: { id: 'user-9', email: 'u9@example.com' }, allowed_integrations: ['sendgrid'] },
      });
      expect(session.statusCode, session.body).toBe(201);
      const link = new URL(session.json().data.connect_link);
      const open = await t.app.inject({ method: 'GET', url: link.pathname + link.search });
      const cookie = String(open.headers['set-cookie']).split(';')[0]!;
      const submit = await t.app.inject({
        method: 'POST',
        url: '/connect/i/sendgrid',
        headers: { cookie, 'content-type': 'application/x-www-form-urlencoded' },
        payload: new URLSearchParams({ api_key: 'SG.test-key-for-webhooks' }).toString(),
      });
      expect(submit.statusCode, submit.body).toBe(200);
      // Imports send auth webhooks too: this one is the Connect page's.
      const auth = await until('the auth webhook', async () => rx.of('auth').find((r) => r.body.providerConfigKey === 'sendgrid'));
      expect(auth.verifiedWith).toEqual([0]);
      expect(auth.body).toMatchObject({
        type: 'auth',
        operation: 'creation',
        success: true,
        providerConfigKey: 'sendgrid',
        provider: 'sendgrid',
        authMode: 'API_KEY',
        endUser: { id: 'user-9' },
      });
      expect(auth.raw).not.toContain('SG.test-key-for-webhooks');
    } finally {
      await new Promise((r) => sendgrid.close(r));
    }
  });

  it('a receiver that is down gets retries with backoff; the delivery log shows them; it arrives once the receiver is back', async () => {
    rx.failWith = 503;
    const attemptsBefore = rx.attempts;
    const failing = await t.call({
      method: 'POST',
      url: '/sync/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] },
    });
    expect(failing.statusCode).toBe(200);
    await until('two failed attempts', async () => rx.attempts >= attemptsBefore + 2);
    // Other deliveries (auth events of earlier imports) may be among those attempts: wait for the sync's own.
    const pending = await until('two failed attempts of the sync delivery', async () =>
      (await deliveries('?status=pending')).find((d) => d.type === 'sync' && d.attempts >= 2),
    );
    expect(pending).toMatchObject({ last_status_code: 503, last_error: expect.stringContaining('503') });
    expect(pending.attempts).toBeGreaterThanOrEqual(2);
    rx.failWith = null;
    const delivered = await until('the retried delivery', async () =>
      (await deliveries()).find((d) => d.id === pending.id && d.status === 'delivered'),
    );
    expect(delivered.attempts).toBeGreaterThanOrEqual(3);
    expect(rx.of('sync').filter((r) => r.headers['terapi-webhook-id'] === pending.id)).toHaveLength(1);
  });

  it('after the last attempt the delivery is failed; it can be resent', async () => {
    rx.failWith = 500;
    const count = rx.received.length;
    await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] } });
    const failed = await until('a failed delivery', async () => (await deliveries('?status=failed'))[0]);
    expect(failed.attempts).toBe(4);
    rx.failWith = null;
    const resend = await t.call({ method: 'POST', url: `/environment/webhooks/deliveries/${failed.id}/retry` });
    expect(resend.statusCode, resend.body).toBe(202);
    const resent = await until('the resent delivery', async () =>
      (await deliveries()).find((d) => d.id === failed.id && d.status === 'delivered'),
    );
    expect(rx.received.length).toBe(count + 1);
    // The resend is the delivery's fifth attempt, and says so.
    expect(resent.attempts).toBe(5);
    expect(rx.received.at(-1)!.headers['terapi-webhook-id']).toBe(failed.id);
    expect(rx.received.at(-1)!.headers['terapi-attempt']).toBe('5');
    // The resend carries the event's id as the delivery log shows it (receivers deduplicate on it).
    expect(rx.received.at(-1)!.body.eventId).toBe(failed.event_id);
    expect(
      (await t.call({ method: 'POST', url: '/environment/webhooks/deliveries/00000000-0000-4000-8000-000000000000/retry' })).statusCode,
    ).toBe(404);
  });

  it('secret rotation: during the overlap both secrets sign, after it only the new one', async () => {
    const r = await t.call({ method: 'POST', url: '/environment/webhooks/rotate-secret', payload: { overlap_seconds: 3600 } });
    expect(r.statusCode, r.body).toBe(200);
    const { secret, previous_secret_expires_at } = r.json();
    expect(secret).not.toBe(rx.secrets[0]);
    expect(Date.parse(previous_secret_expires_at)).toBeGreaterThan(Date.now() + 3500_000);
    rx.secrets = [rx.secrets[0]!, secret];
    const n = rx.of('sync').length;
    await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] } });
    const overlapped = await until('a delivery during the overlap', async () => rx.of('sync')[n]);
    expect(overlapped.verifiedWith).toEqual([0, 1]);

    const hard = await t.call({ method: 'POST', url: '/environment/webhooks/rotate-secret', payload: { overlap_seconds: 0 } });
    rx.secrets = [secret, hard.json().secret];
    expect(hard.json().previous_secret_expires_at).toBeNull();
    await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] } });
    const after = await until('a delivery after the rotation', async () => rx.of('sync')[n + 1]);
    expect(after.verifiedWith).toEqual([1]);
  });

  it('an async action announces its result with an async_action event', async () => {
    await enable(t, KEY, 'create-issue');
    const [owner, repo] = [...gh.state.repos.values()][0]!.full_name.split('/');
    const r = await t.call({
      method: 'POST',
      url: '/action/trigger',
      headers: { 'x-async': 'true' },
      payload: { connection_id: CONN, provider_config_key: KEY, action_name: 'create-issue', input: { owner, repo, title: 'async' } },
    });
    expect(r.statusCode, r.body).toBe(202);
    const event = await until('the async_action webhook', async () => rx.of('async_action')[0]);
    expect(event.body).toMatchObject({
      type: 'async_action',
      success: true,
      connectionId: CONN,
      id: r.json().id,
      statusUrl: r.json().status_url,
      actionName: 'create-issue',
    });
  });

  it('a failed sync is announced with its error', async () => {
    gh.controls.failNext(4, 500);
    const n = rx.of('sync').length;
    await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] } });
    const failed = await until('the failed-sync webhook', async () =>
      rx
        .of('sync')
        .slice(n)
        .find((e) => e.body.success === false),
    );
    expect(failed.body).toMatchObject({
      type: 'sync',
      operation: 'failed',
      success: false,
      syncName: 'issues',
      error: { message: expect.stringContaining('500') },
    });
  });
});
