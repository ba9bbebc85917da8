/**
 * Secrets (DESIGN.md, Invariants): OAuth client secrets, integration secrets, provider credentials
 * and secret keys never appear in an API response — except where the route's purpose is to hand
 * out a token — never in a log line, and never in plaintext in the database.
 *
 * Every secret below is a unique random value, so finding it anywhere is a leak. Each check looks
 * for the whole value and for its random core (a response or log that truncated or re-prefixed a
 * secret still leaks it).
 *
 * The app runs its queue workers: a GitHub integration on a fake GitHub API syncs records and runs
 * actions (synchronous, X-Async, and one the provider refuses) with a connection's access token,
 * and the events go out as signed webhooks to a local endpoint. The webhook signing secret is one
 * of the secrets: handed out only by the calls that create or rotate it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type SQL, sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { createVault } from '../../src/lib/vault.js';
import { verifySignature } from '../../src/webhooks/signing.js';
import { type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';
import { ADMIN_KEY, createTestApp, defaultTestConfig, type TestApp } from '../helpers/app.js';
import { until } from '../helpers/syncs.js';
import { startWebhookReceiver, type WebhookReceiver } from './fixtures.js';

// ---------------------------------------------------------------------------------------------
// Known secrets
// ---------------------------------------------------------------------------------------------

interface Secret {
  label: string;
  value: string;
  /** Substrings that betray the secret (the value and its random part). */
  cores: string[];
}

const known: Secret[] = [];

/** A new unique secret value, registered for every leak check of this file. */
function secret(label: string): string {
  const core = randomBytes(16).toString('hex');
  const value = `${label}_${core}`;
  known.push({ label, value, cores: [value, core] });
  return value;
}

/** Registers a value made elsewhere (an environment key, the admin key), with the part that is not public. */
function registerSecret(label: string, value: string, publicPrefixLength: number) {
  known.push({ label, value, cores: [value, value.slice(publicPrefixLength)] });
}

/** Registers a value made elsewhere that is secret as a whole (a provider's token, an authorization code). */
function registerOpaque(label: string, value: string) {
  expect(value.length, label).toBeGreaterThanOrEqual(16);
  known.push({ label, value, cores: [value] });
}

/** Labels of the known secrets that occur in `text`, except those whose value is in `allowed`. */
function secretsIn(text: string, allowed: readonly string[] = []): string[] {
  return known.filter((s) => !allowed.includes(s.value) && s.cores.some((c) => text.includes(c))).map((s) => s.label);
}

const everything = (res: LightMyRequestResponse) => `${JSON.stringify(res.headers)}\n${res.body}`;

const S = {
  ghClientSecret: secret('gh_client_secret'),
  ghWebhookSecret: secret('gh_webhook_secret'),
  paypalClientSecret: secret('paypal_client_secret'),
  slackClientSecret: secret('slack_client_secret'),
  slackSigningSecret: secret('slack_signing_secret'),
  slackClientSecret2: secret('slack_client_secret_rotated'),
  slackSigningSecret2: secret('slack_signing_secret_rotated'),
  sgWebhookSecret: secret('sendgrid_webhook_secret'),
  ghAccess: secret('gho_access'),
  ghRefresh: secret('ghr_refresh'),
  ghAccess2: secret('gho_access_2_replaced'),
  ghAccess2b: secret('gho_access_2'),
  ghRefresh2b: secret('ghr_refresh_2'),
  sgApiKey: secret('SG_api_key'),
  twPassword: secret('twilio_password'),
  ppConnClientSecret: secret('paypal_conn_client_secret'),
  ppAccess: secret('paypal_access'),
  fixtureClientSecret: secret('fixture_client_secret'),
  connectApiKey: secret('SG_connect_api_key'),
  connectWrongKey: secret('SG_connect_wrong_key'),
  // The GitHub integration whose functions run (on the fake GitHub, which accepts only this token).
  ghSyncClientSecret: secret('gh_sync_client_secret'),
  ghSyncWebhookSecret: secret('gh_sync_webhook_secret'),
  ghSyncAccess: secret('gho_sync_access'),
};
const TWILIO_USER = 'AC0123456789abcdef';
const TWILIO_BASIC = Buffer.from(`${TWILIO_USER}:${S.twPassword}`).toString('base64');

/**
 * What the token-handout routes return for each connection: the Nango GET /connections/{id}
 * (`always`, plus `withFlag` with `refresh_token=true`), and GET /auth/token (`authToken`: the
 * access token, API key, or base64 `username:password` for BASIC; never the refresh token).
 */
const handouts: Record<string, { always: string[]; withFlag: string[]; authToken: string[] }> = {
  'gh-user-1': { always: [S.ghAccess], withFlag: [S.ghRefresh], authToken: [S.ghAccess] },
  'gh-user-2': { always: [S.ghAccess2b], withFlag: [S.ghRefresh2b], authToken: [S.ghAccess2b] },
  'sg-user': { always: [S.sgApiKey], withFlag: [], authToken: [S.sgApiKey] },
  'tw-user': { always: [S.twPassword], withFlag: [], authToken: [TWILIO_BASIC] },
  'pp-user': { always: [S.ppAccess], withFlag: [], authToken: [S.ppAccess] },
};
const connections = [
  { key: 'gh', id: 'gh-user-1', provider: 'github' },
  { key: 'gh', id: 'gh-user-2', provider: 'github' },
  { key: 'sendgrid', id: 'sg-user', provider: 'sendgrid' },
  { key: 'twilio', id: 'tw-user', provider: 'twilio' },
  { key: 'paypal', id: 'pp-user', provider: 'paypal' },
];

// ---------------------------------------------------------------------------------------------

let t: TestApp;
/** Every create/update response of the setup, by label. */
const writes: { label: string; res: LightMyRequestResponse }[] = [];
const admin = {
  accountId: '',
  environmentId: '',
  createdKey: '',
  rotatedKey: '',
  createRes: undefined as unknown as LightMyRequestResponse,
  rotateRes: undefined as unknown as LightMyRequestResponse,
};

async function write(label: string, opts: Parameters<TestApp['call']>[0], status = 200) {
  const res = await t.call(opts);
  expect(res.statusCode, `${label}: ${res.body}`).toBe(status);
  writes.push({ label, res });
  return res;
}

beforeAll(async () => {
  // The Connect page's OAuth flow runs against a real authorization server on loopback, and its API
  // key check against a local stand-in for SendGrid's API (SendGrid's base URL is overridable).
  oauthServer = await startOAuthServer({
    clients: [{ client_id: FIXTURE_CLIENT_ID, client_secret: S.fixtureClientSecret, redirect_uris: [CALLBACK_URL] }],
  });
  fakeApi = createServer((req, res) => {
    const ok = req.headers.authorization === `Bearer ${S.connectApiKey}`;
    res
      .writeHead(ok ? 200 : 401, { 'content-type': 'application/json' })
      .end(JSON.stringify(ok ? { scopes: [] } : { errors: [{ message: 'bad key' }] }));
  });
  await new Promise<void>((r) => fakeApi.listen(0, '127.0.0.1', r));
  fakeApiUrl = `http://127.0.0.1:${(fakeApi.address() as AddressInfo).port}`;

  github = await startFakeGithub({ token: S.ghSyncAccess });
  github.controls.seed({ repos: 2, issuesPerRepo: 3 });
  github.controls.addIssue(`${github.login}/repo-1`, { title: ISSUE_MARKER });
  receiver = await startWebhookReceiver('/hooks/secrets');

  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true } });
  registerSecret('environment secret key', t.env.key, 'terapi_sk_'.length + 4);
  registerSecret('admin key', ADMIN_KEY, 'admin_'.length);
  known.push({ label: 'twilio basic auth header', value: TWILIO_BASIC, cores: [TWILIO_BASIC] });

  // Integrations through each family, with every kind of secret.
  await write('POST /integration github', {
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: 'gh',
      provider: 'github',
      oauth_client_id: 'gh-client-id',
      oauth_client_secret: S.ghClientSecret,
      oauth_scopes: 'repo,read:user',
      params: { api_version: '2022-11-28' },
      secrets: { webhook_secret: S.ghWebhookSecret },
    },
  });
  await write('POST /v1/integrations paypal', {
    method: 'POST',
    url: '/v1/integrations',
    payload: {
      provider_config_key: 'paypal',
      provider: 'paypal',
      oauth_client_id: 'pp-client-id',
      oauth_client_secret: S.paypalClientSecret,
    },
  });
  await write('POST /integrations slack', {
    method: 'POST',
    url: '/integrations',
    payload: {
      unique_key: 'slack',
      provider: 'slack',
      credentials: { type: 'OAUTH2', client_id: 'slack-client-id', client_secret: S.slackClientSecret, scopes: 'chat:write' },
      secrets: { signing_secret: S.slackSigningSecret },
    },
  });
  await write('PATCH /integrations/slack', {
    method: 'PATCH',
    url: '/integrations/slack',
    payload: {
      credentials: { type: 'OAUTH2', client_id: 'slack-client-id-2', client_secret: S.slackClientSecret2 },
      secrets: { signing_secret: S.slackSigningSecret2 },
    },
  });
  await write('POST /integration sendgrid', {
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: 'sendgrid', provider: 'sendgrid', secrets: { event_webhook_key: S.sgWebhookSecret } },
  });
  await write('POST /integrations twilio', { method: 'POST', url: '/integrations', payload: { unique_key: 'twilio', provider: 'twilio' } });

  // Connections through each family, with every auth mode.
  await write('POST /connection github', {
    method: 'POST',
    url: '/connection',
    payload: {
      connection_id: 'gh-user-1',
      provider_config_key: 'gh',
      credentials: { access_token: S.ghAccess, refresh_token: S.ghRefresh, expires_in: 3600, token_type: 'bearer', scope: 'repo' },
      metadata: { plan: 'pro' },
    },
  });
  await write('POST /v1/connections github', {
    method: 'POST',
    url: '/v1/connections',
    payload: { connection_id: 'gh-user-2', provider_config_key: 'gh', credentials: { access_token: S.ghAccess2 } },
  });
  await write('POST /connection github (new credentials)', {
    method: 'POST',
    url: '/connection',
    payload: {
      connection_id: 'gh-user-2',
      provider_config_key: 'gh',
      credentials: { access_token: S.ghAccess2b, refresh_token: S.ghRefresh2b },
    },
  });
  await write(
    'POST /connections sendgrid',
    {
      method: 'POST',
      url: '/connections',
      payload: { provider_config_key: 'sendgrid', connection_id: 'sg-user', credentials: { apiKey: S.sgApiKey } },
    },
    201,
  );
  await write(
    'POST /connections twilio',
    {
      method: 'POST',
      url: '/connections',
      payload: {
        provider_config_key: 'twilio',
        connection_id: 'tw-user',
        credentials: { type: 'BASIC', username: TWILIO_USER, password: S.twPassword },
      },
    },
    201,
  );
  await write('POST /connection paypal', {
    method: 'POST',
    url: '/connection',
    payload: {
      connection_id: 'pp-user',
      provider_config_key: 'paypal',
      credentials: { client_id: 'pp-conn-client', client_secret: S.ppConnClientSecret, access_token: S.ppAccess, expires_in: 3600 },
    },
  });
  await write('POST /connections upsert github (metadata only)', {
    method: 'POST',
    url: '/connections',
    payload: { provider_config_key: 'gh', connection_id: 'gh-user-1', metadata: { plan: 'enterprise' } },
  });
  await write('POST /connection/{id}/metadata', {
    method: 'POST',
    url: '/connection/gh-user-1/metadata?provider_config_key=gh',
    payload: { plan: 'team', seats: 5 },
  });
  await write('PATCH /v1/connections/{id}/metadata', {
    method: 'PATCH',
    url: '/v1/connections/sg-user/metadata?provider_config_key=sendgrid',
    payload: { region: 'eu' },
  });
  await write('POST /connection/metadata', {
    method: 'POST',
    url: '/connection/metadata',
    payload: { connection_id: ['tw-user'], provider_config_key: 'twilio', metadata: { sid: 'x' } },
  });
  await write('PATCH /connection/metadata', {
    method: 'PATCH',
    url: '/connection/metadata',
    payload: { connection_id: 'pp-user', provider_config_key: 'paypal', metadata: { merchant: 'm' } },
  });

  // Admin: an account and an environment whose key is shown once, then rotated.
  const account = await t.call({ method: 'POST', url: '/admin/accounts', key: ADMIN_KEY, payload: { name: 'Secrets Co' } });
  expect(account.statusCode, account.body).toBe(201);
  writes.push({ label: 'POST /admin/accounts', res: account });
  admin.accountId = account.json().data.id;
  admin.createRes = await t.call({
    method: 'POST',
    url: `/admin/accounts/${admin.accountId}/environments`,
    key: ADMIN_KEY,
    payload: { name: 'prod' },
  });
  expect(admin.createRes.statusCode, admin.createRes.body).toBe(201);
  admin.environmentId = admin.createRes.json().data.id;
  admin.createdKey = admin.createRes.json().data.secret_key;
  admin.rotateRes = await t.call({ method: 'POST', url: `/admin/environments/${admin.environmentId}/rotate-secret-key`, key: ADMIN_KEY });
  expect(admin.rotateRes.statusCode, admin.rotateRes.body).toBe(200);
  admin.rotatedKey = admin.rotateRes.json().data.secret_key;
  registerSecret('admin-created environment key', admin.createdKey, 'terapi_sk_'.length + 4);
  registerSecret('rotated environment key', admin.rotatedKey, 'terapi_sk_'.length + 4);

  await connectFlows();
  await functionFlows();
});
afterAll(async () => {
  await t?.close();
  await oauthServer?.close();
  await new Promise((r) => (fakeApi ? fakeApi.close(r) : r(undefined)));
  await github?.close();
  await receiver?.close();
});

// ---------------------------------------------------------------------------------------------
// Connect sessions, the Connect pages and the OAuth callback
// ---------------------------------------------------------------------------------------------

const CALLBACK_URL = `${defaultTestConfig.serverUrl}/oauth/callback`;
const FIXTURE_CLIENT_ID = 'secrets-fixture-client';
const CONNECT_USER = 'connect-end-user-7';
let oauthServer: OAuthServer;
let fakeApi: Server;
let fakeApiUrl = '';

const connect = {
  /** The session every page below runs in, its reconnect sibling, and one deleted through its own token. */
  token: '',
  reconnectToken: '',
  deletedToken: '',
  createRes: undefined as unknown as LightMyRequestResponse,
  reconnectRes: undefined as unknown as LightMyRequestResponse,
  /** The OAuth state and code of the completed flow (one-time credentials, never to be shown or logged). */
  state: '',
  oauthConnectionId: '',
  sgConnectionId: '',
  /** The fixture connection's tokens: first issued, then after a forced refresh. */
  access: '',
  refresh: '',
  access2: '',
  refresh2: '',
  /**
   * Every response of the connect flows, with the secrets it may carry: `allowed` anywhere,
   * `cookie` only in its Set-Cookie header (the link moves the session token into a cookie).
   */
  responses: [] as { label: string; res: LightMyRequestResponse; allowed: string[]; cookie?: string }[],
};

function record(label: string, res: LightMyRequestResponse, status: number, allowed: string[] = [], cookie?: string) {
  expect(res.statusCode, `${label}: ${res.body.slice(0, 500)}`).toBe(status);
  connect.responses.push({ label, res, allowed, cookie });
  return res;
}

/** A browser request: no Authorization header, the Connect cookie if any, a form body if any. */
const browser = (
  method: 'GET' | 'POST',
  url: string,
  cookie?: string,
  form?: Record<string, string>,
  headers: Record<string, string> = {},
) =>
  t.app.inject({
    method,
    url,
    headers: {
      ...(cookie ? { cookie } : {}),
      ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}),
      ...headers,
    },
    payload: form ? new URLSearchParams(form).toString() : undefined,
  });

const bearer = (method: 'GET' | 'DELETE', url: string, token: string) =>
  t.app.inject({ method, url, headers: { authorization: `Bearer ${token}` } });

/** Opens a connect link as a browser would: 303 to /connect with the token moved into a cookie. */
async function openLink(label: string, link: string, token: string): Promise<string> {
  const u = new URL(link);
  const open = record(label, await browser('GET', u.pathname + u.search), 303, [], token);
  expect(open.headers.location).toBe('/connect');
  const setCookie = String(open.headers['set-cookie']);
  expect(setCookie).toMatch(/HttpOnly/);
  return setCookie.split(';')[0]!;
}

const connectionIdOf = (res: LightMyRequestResponse) => /data-connection-id="([^"]+)"/.exec(res.body)?.[1] ?? '';

async function connectFlows() {
  await write('POST /integration fixture (generic oauth2)', {
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: 'fixture',
      provider: 'oauth2',
      oauth_client_id: FIXTURE_CLIENT_ID,
      oauth_client_secret: S.fixtureClientSecret,
      oauth_scopes: 'read',
      authorization_url: oauthServer.authorizationUrl,
      token_url: oauthServer.tokenUrl,
      api_base_url: oauthServer.issuer,
    },
  });
  await write('POST /integration sendgrid (local API)', {
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: 'sg-local', provider: 'sendgrid', api_base_url: fakeApiUrl },
  });

  // A session for every integration; its token is handed out once, with the link that carries it.
  connect.createRes = await t.call({
    method: 'POST',
    url: '/connect/sessions',
    payload: {
      end_user: { id: CONNECT_USER, email: 'connect-user@example.com', display_name: 'Connect User' },
      tags: { plan: 'pro' },
      redirect_url: 'https://app.example.com/connected',
    },
  });
  expect(connect.createRes.statusCode, connect.createRes.body).toBe(201);
  connect.token = connect.createRes.json().data.token;
  registerSecret('connect session token', connect.token, 'terapi_cs_'.length + 4);
  const cookie = await openLink('GET connect link', connect.createRes.json().data.connect_link, connect.token);

  record('GET /connect (list)', await browser('GET', '/connect', cookie), 200);
  record('GET /connect/i/gh (OAuth start)', await browser('GET', '/connect/i/gh', cookie), 303);
  record('GET /connect/i/paypal (client credentials form)', await browser('GET', '/connect/i/paypal', cookie), 200);
  record('GET /connect/i/twilio (basic form)', await browser('GET', '/connect/i/twilio', cookie), 200);

  // An API key typed on the form: a rejected one is not echoed, an accepted one is stored, not shown.
  record('GET /connect/i/sg-local (API key form)', await browser('GET', '/connect/i/sg-local', cookie), 200);
  record('POST /connect/i/sg-local wrong key', await browser('POST', '/connect/i/sg-local', cookie, { api_key: S.connectWrongKey }), 400);
  record(
    'POST /connect/i/sg-local from another origin',
    await browser('POST', '/connect/i/sg-local', cookie, { api_key: S.connectApiKey }, { origin: 'https://evil.example.com' }),
    403,
  );
  const sg = record(
    'POST /connect/i/sg-local good key',
    await browser('POST', '/connect/i/sg-local', cookie, { api_key: S.connectApiKey }),
    200,
  );
  connect.sgConnectionId = connectionIdOf(sg);
  expect(connect.sgConnectionId).not.toBe('');
  handouts[connect.sgConnectionId] = { always: [S.connectApiKey], withFlag: [], authToken: [S.connectApiKey] };
  connections.push({ key: 'sg-local', id: connect.sgConnectionId, provider: 'sendgrid' });

  // OAuth through the fixture: the code and state pass through the callback URL, the tokens are stored.
  const start = record('GET /connect/i/fixture (OAuth start)', await browser('GET', '/connect/i/fixture', cookie), 303);
  const redirect = await oauthServer.authorize(String(start.headers.location));
  connect.state = redirect.searchParams.get('state') ?? '';
  registerOpaque('oauth state', connect.state);
  // The state is meant to travel in the authorization URL (and nowhere else).
  connect.responses.at(-1)!.allowed.push(connect.state);
  registerOpaque('oauth authorization code', redirect.searchParams.get('code') ?? '');
  const done = record('GET /oauth/callback (success)', await browser('GET', `/oauth/callback${redirect.search}`), 200);
  connect.oauthConnectionId = connectionIdOf(done);
  expect(connect.oauthConnectionId).not.toBe('');
  record('GET /oauth/callback (replayed)', await browser('GET', `/oauth/callback${redirect.search}`), 401);

  const tokenUrl = `/auth/token/fixture/${connect.oauthConnectionId}`;
  const nangoUrl = `/connections/${connect.oauthConnectionId}?provider_config_key=fixture&refresh_token=true`;
  const first = await t.call({ method: 'GET', url: nangoUrl });
  connect.access = first.json().credentials.access_token;
  connect.refresh = first.json().credentials.refresh_token;
  registerOpaque('fixture access token', connect.access);
  registerOpaque('fixture refresh token', connect.refresh);
  record('GET /connections/{id}?refresh_token=true (fixture)', first, 200, [connect.access, connect.refresh]);
  record('GET /auth/token (fixture)', await t.call({ method: 'GET', url: tokenUrl }), 200, [connect.access]);
  record('GET /v1/auth/token (fixture)', await t.call({ method: 'GET', url: `/v1${tokenUrl}` }), 200, [connect.access]);
  // A forced refresh: the provider's new token response (with a new refresh token in `raw`) is stored;
  // the handout carries only the new access token.
  const forced = await t.call({ method: 'GET', url: `${tokenUrl}?force_refresh=true` });
  const second = await t.call({ method: 'GET', url: nangoUrl });
  connect.access2 = second.json().credentials.access_token;
  connect.refresh2 = second.json().credentials.refresh_token;
  registerOpaque('fixture access token (refreshed)', connect.access2);
  registerOpaque('fixture refresh token (rotated)', connect.refresh2);
  expect(connect.access2).not.toBe(connect.access);
  expect(connect.refresh2).not.toBe(connect.refresh);
  record('GET /auth/token?force_refresh=true (fixture)', forced, 200, [connect.access2]);
  record('GET /connections/{id}?refresh_token=true (fixture, refreshed)', second, 200, [connect.access2, connect.refresh2]);

  // The session token in a query string (/oauth/connect) is not reflected anywhere.
  record(
    `GET /oauth/connect/fixture?connect_session_token`,
    await browser('GET', `/oauth/connect/fixture?connect_session_token=${connect.token}`),
    302,
  );
  record('GET /oauth/connect/gh (cookie)', await browser('GET', '/oauth/connect/gh', cookie), 302);

  // Error pages carrying secrets in the request.
  record(
    'GET /oauth/callback forged state',
    await browser('GET', `/oauth/callback?state=${secret('forged_state')}&code=${secret('forged_code')}`),
    401,
  );
  record(
    'GET /oauth/callback error without state',
    await browser('GET', `/oauth/callback?error=access_denied&code=${secret('stray_code')}`),
    401,
  );
  record('GET connect link of no session', await browser('GET', `/connect?session_token=terapi_cs_${secret('bogus_link_token')}`), 401);
  record(
    'GET /connect with a bogus cookie',
    await browser('GET', '/connect', `terapi_connect=terapi_cs_${secret('bogus_cookie_token')}`),
    401,
  );
  record(
    'GET /oauth/connect with a bogus token',
    await browser('GET', `/oauth/connect/fixture?connect_session_token=terapi_cs_${secret('bogus_query_token')}`),
    401,
  );
  record('GET /connect/session with an environment key', await t.call({ method: 'GET', url: '/connect/session' }), 401);
  record(
    'GET /connect/session with a bogus token',
    await bearer('GET', '/connect/session', `terapi_cs_${secret('bogus_bearer_token')}`),
    401,
  );
  record('GET /connect/session', await bearer('GET', '/connect/session', connect.token), 200);

  // A reconnect session: straight to the connection's integration.
  connect.reconnectRes = await t.call({
    method: 'POST',
    url: '/connect/sessions/reconnect',
    payload: { connection_id: 'gh-user-1', integration_id: 'gh' },
  });
  expect(connect.reconnectRes.statusCode, connect.reconnectRes.body).toBe(201);
  connect.reconnectToken = connect.reconnectRes.json().data.token;
  registerSecret('reconnect session token', connect.reconnectToken, 'terapi_cs_'.length + 4);
  const reCookie = await openLink('GET reconnect link', connect.reconnectRes.json().data.connect_link, connect.reconnectToken);
  const reList = record('GET /connect (reconnect)', await browser('GET', '/connect', reCookie), 303);
  record('GET /connect/i/gh (reconnect)', await browser('GET', String(reList.headers.location), reCookie), 303);
  record('GET /connect/session (reconnect)', await bearer('GET', '/connect/session', connect.reconnectToken), 200);

  // A session ended through its own token.
  const third = await t.call({ method: 'POST', url: '/connect/sessions', payload: { end_user: { id: 'connect-end-user-8' } } });
  expect(third.statusCode, third.body).toBe(201);
  connect.deletedToken = third.json().data.token;
  registerSecret('deleted session token', connect.deletedToken, 'terapi_cs_'.length + 4);
  record('DELETE /connect/session', await bearer('DELETE', '/connect/session', connect.deletedToken), 204);
  record('GET /connect/session after DELETE', await bearer('GET', '/connect/session', connect.deletedToken), 401);
}

// ---------------------------------------------------------------------------------------------
// Functions: a sync and actions run by the workers, and the webhooks that announce them
// ---------------------------------------------------------------------------------------------

const ISSUE_MARKER = 'secrets-fixture-issue';
const SYNC_CONNECTION = 'gh-sync-user';
let github: FakeGithub;
let receiver: WebhookReceiver;

const fn = {
  /** The webhook settings answers: the first PUT (creates the secret), a second PUT, the rotation, a GET. */
  putRes: undefined as unknown as LightMyRequestResponse,
  putAgainRes: undefined as unknown as LightMyRequestResponse,
  rotateRes: undefined as unknown as LightMyRequestResponse,
  getRes: undefined as unknown as LightMyRequestResponse,
  secret: '',
  rotatedSecret: '',
  syncRun: '',
  actionRun: '',
  asyncActionRun: '',
  failedActionRun: '',
  /** Answers of the action triggers (synchronous, X-Async, refused by the provider). */
  responses: [] as { label: string; res: LightMyRequestResponse }[],
};

/** Parameters of the sync connection's GET contexts: its sync, the sync's model. */
const functionParams: Record<string, Record<string, string>> = {};

async function functionFlows() {
  // The signing secret: created (and shown) by the first PUT, not by the next; rotated (and shown) once.
  fn.putRes = await t.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls: [receiver.url] } });
  expect(fn.putRes.statusCode, fn.putRes.body).toBe(200);
  fn.secret = fn.putRes.json().secret ?? '';
  registerSecret('webhook signing secret', fn.secret, 'whsec_'.length + 4);
  fn.putAgainRes = await t.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls: [receiver.url] } });
  expect(fn.putAgainRes.statusCode, fn.putAgainRes.body).toBe(200);
  fn.rotateRes = await t.call({ method: 'POST', url: '/environment/webhooks/rotate-secret', payload: { overlap_seconds: 3600 } });
  expect(fn.rotateRes.statusCode, fn.rotateRes.body).toBe(200);
  fn.rotatedSecret = fn.rotateRes.json().secret ?? '';
  registerSecret('webhook signing secret (rotated)', fn.rotatedSecret, 'whsec_'.length + 4);
  fn.getRes = await t.call({ method: 'GET', url: '/environment/webhooks' });

  await write('POST /integration gh-sync (fake GitHub API)', {
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: 'gh-sync',
      provider: 'github',
      oauth_client_id: 'gh-sync-client-id',
      oauth_client_secret: S.ghSyncClientSecret,
      api_base_url: github.url,
      secrets: { webhook_secret: S.ghSyncWebhookSecret },
    },
  });
  // No refresh token: a forced refresh in the GET sweep below must not reach GitHub's real token endpoint.
  await write('POST /connection gh-sync', {
    method: 'POST',
    url: '/connection',
    payload: {
      connection_id: SYNC_CONNECTION,
      provider_config_key: 'gh-sync',
      credentials: { access_token: S.ghSyncAccess, token_type: 'bearer', scope: 'repo' },
    },
  });
  handouts[SYNC_CONNECTION] = { always: [S.ghSyncAccess], withFlag: [], authToken: [S.ghSyncAccess] };
  connections.push({ key: 'gh-sync', id: SYNC_CONNECTION, provider: 'github' });
  functionParams[SYNC_CONNECTION] = { sync_name: 'issues', syncs: 'issues', model: 'GithubIssue' };

  // The sync starts on its own (auto-start) and writes records with the connection's token.
  await write(
    'POST /integration/{key}/functions issues',
    { method: 'POST', url: '/integration/gh-sync/functions', payload: { name: 'issues', frequency: '1d' } },
    201,
  );
  await write(
    'POST /v1/integrations/{key}/functions create-issue',
    { method: 'POST', url: '/v1/integrations/gh-sync/functions', payload: { name: 'create-issue' } },
    201,
  );
  await until('the issues sync', async () => {
    const res = (await t.call({ method: 'GET', url: `/sync/${SYNC_CONNECTION}/issues?provider_config_key=gh-sync` })).json();
    if (res.status === 'error') throw new Error(`the sync failed: ${res.error}`);
    return res.status === 'success';
  });
  fn.syncRun = (await t.call({ method: 'GET', url: `/sync/${SYNC_CONNECTION}/issues/runs?provider_config_key=gh-sync` })).json().runs[0].id;

  const trigger = (label: string, status: number, opts: Parameters<TestApp['call']>[0]) =>
    t.call(opts).then((res) => {
      expect(res.statusCode, `${label}: ${res.body}`).toBe(status);
      fn.responses.push({ label, res });
      return res;
    });
  const input = (repo: string, title: string) => ({ owner: github.login, repo, title, body: 'from the secrets sweep' });
  await trigger('POST /action/trigger', 200, {
    method: 'POST',
    url: '/action/trigger',
    payload: {
      connection_id: SYNC_CONNECTION,
      provider_config_key: 'gh-sync',
      action_name: 'create-issue',
      input: input('repo-1', 'created'),
    },
  });
  const pending = await trigger('POST /v1/actions/trigger (X-Async)', 202, {
    method: 'POST',
    url: '/v1/actions/trigger',
    headers: { 'connection-id': SYNC_CONNECTION, 'provider-config-key': 'gh-sync', 'x-async': 'true' },
    payload: { action_name: 'create-issue', input: input('repo-2', 'created async') },
  });
  fn.asyncActionRun = pending.json().id;
  // The provider refuses (no such repository): 424 with GitHub's answer.
  const failed = await trigger('POST /action/trigger (provider error)', 424, {
    method: 'POST',
    url: '/action/trigger',
    payload: {
      connection_id: SYNC_CONNECTION,
      provider_config_key: 'gh-sync',
      action_name: 'create-issue',
      input: input('no-such-repo', 'refused'),
    },
  });
  fn.failedActionRun = failed.json().run_id;
  await until(
    'the async action',
    async () => (await t.call({ method: 'GET', url: `/action/${fn.asyncActionRun}` })).json().status === 'success',
  );
  const rows = await queryRows<{ id: string }>(
    t.db.database.db,
    sql`SELECT id::text AS id FROM runs WHERE type = 'action' AND NOT async AND status = 'success'`,
  );
  fn.actionRun = rows[0]!.id;

  // The sync's and the async action's events, delivered to the endpoint.
  await until('the webhook deliveries', async () => {
    const list: { type: string; status: string }[] = (
      await t.call({ method: 'GET', url: '/environment/webhooks/deliveries?limit=200' })
    ).json().deliveries;
    return ['sync', 'async_action'].every((type) => list.some((d) => d.type === type)) && list.every((d) => d.status === 'delivered');
  });
}

// ---------------------------------------------------------------------------------------------
// OpenAPI: every GET route, with its parameters filled from the fixture
// ---------------------------------------------------------------------------------------------

interface Param {
  name: string;
  in: string;
  required?: boolean;
  schema?: { type?: unknown; enum?: unknown[] };
}

/** Values for path and query parameters, one set per resource of the fixture. */
function contexts(): Record<string, string>[] {
  const out: Record<string, string>[] = connections.map((c) => ({
    provider_config_key: c.key,
    integrationId: c.key,
    unique_key: c.key,
    connection_id: c.id,
    connectionId: c.id,
    name: c.provider,
    // GET /records takes the connection in headers.
    'connection-id': c.id,
    'provider-config-key': c.key,
    ...functionParams[c.id],
  }));
  out.push({ provider_config_key: 'slack', integrationId: 'slack', unique_key: 'slack', name: 'slack' });
  out.push({ account_id: t.env.accountId, environment_id: t.env.id });
  out.push({ account_id: admin.accountId, environment_id: admin.environmentId });
  // Runs (of the sync and of each action) and action results.
  for (const id of [fn.syncRun, fn.actionRun, fn.asyncActionRun, fn.failedActionRun]) out.push({ run_id: id });
  for (const id of [fn.actionRun, fn.asyncActionRun, fn.failedActionRun]) out.push({ id });
  return out;
}

const isBooleanParam = (p: Param) => p.schema?.type === 'boolean' || (Array.isArray(p.schema?.enum) && p.schema.enum.includes('true'));

/** URLs (and header parameters) for a GET route: required parameters only, every known parameter, and every flag on. */
function urlsFor(path: string, params: Param[]): { url: string; ctx: Record<string, string>; headers: Record<string, string> }[] {
  const out = new Map<string, { url: string; ctx: Record<string, string>; headers: Record<string, string> }>();
  for (const ctx of contexts()) {
    const pathParams = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
    if (!pathParams.every((n) => ctx[n] !== undefined)) continue;
    const url = path.replace(/\{([^}]+)\}/g, (_m, n: string) => encodeURIComponent(ctx[n]!));
    const query = params.filter((p) => p.in === 'query');
    if (query.some((p) => p.required && ctx[p.name] === undefined)) continue;
    const headerParams = params.filter((p) => p.in === 'header');
    if (headerParams.some((p) => p.required && ctx[p.name] === undefined)) continue;
    const headers = Object.fromEntries(headerParams.filter((p) => ctx[p.name] !== undefined).map((p) => [p.name, ctx[p.name]!]));
    const variants = [
      query.filter((p) => p.required).map((p) => [p.name, ctx[p.name]!]),
      query.filter((p) => ctx[p.name] !== undefined).map((p) => [p.name, ctx[p.name]!]),
      [
        ...query.filter((p) => ctx[p.name] !== undefined).map((p) => [p.name, ctx[p.name]!]),
        ...query.filter((p) => ctx[p.name] === undefined && isBooleanParam(p)).map((p) => [p.name, 'true']),
      ],
    ];
    for (const v of variants) {
      const qs = new URLSearchParams(v as [string, string][]).toString();
      const full = qs ? `${url}?${qs}` : url;
      out.set(`${full} ${JSON.stringify(headers)}`, { url: full, ctx, headers });
    }
  }
  return [...out.values()];
}

/** The secrets a route may return: the token-handout routes return the connection's own credentials. */
function allowedFor(path: string, url: string, ctx: Record<string, string>): string[] {
  const handout = handouts[ctx.connection_id ?? ''];
  if (!handout) return [];
  if (path === '/connections/{connection_id}') {
    return [...handout.always, ...(/[?&]refresh_token=(true|1)\b/.test(url) ? handout.withFlag : [])];
  }
  if (isAuthToken(path)) return handout.authToken;
  return [];
}

const isAuthToken = (path: string) => /^(\/v1)?\/auth\/token\//.test(path);

// ---------------------------------------------------------------------------------------------

describe('secrets never leave through responses, logs or the database', () => {
  it('create and update responses carry no secret', () => {
    expect(writes.length).toBeGreaterThanOrEqual(17);
    for (const { label, res } of writes) expect(secretsIn(everything(res)), label).toEqual([]);
  });

  it('every GET route returns no secret, except the token handout (access token always, refresh token only on request)', async () => {
    const doc = (await t.call({ method: 'GET', url: '/openapi.json', key: null })).json<{
      paths: Record<string, Record<string, { parameters?: Param[]; security?: Record<string, string[]>[] }>>;
    }>();
    const problems: string[] = [];
    const succeeded = new Set<string>();
    // The proxy returns whatever the provider answers (test/proxy/ checks what it sends and returns).
    const gets = Object.entries(doc.paths).filter(([path, ops]) => ops.get && !/^(\/v1)?\/proxy\//.test(path));
    expect(gets.length).toBeGreaterThanOrEqual(20);
    let calls = 0;
    let handoutChecks = 0;
    let authTokenChecks = 0;

    for (const [path, ops] of [...gets, ['/openapi.json', { get: {} }] as const]) {
      // Routes authorized by a connect session token (GET /connect/session) get the session's token.
      const bySession = (ops.get as { security?: Record<string, string[]>[] }).security?.some((s) => 'ConnectSessionAuth' in s);
      for (const { url, ctx, headers } of urlsFor(path, ops.get?.parameters ?? [])) {
        const key = path.startsWith('/admin') ? ADMIN_KEY : bySession ? connect.token : t.env.key;
        const res = await t.call({ method: 'GET', url, key, headers });
        calls++;
        if (res.statusCode >= 200 && res.statusCode < 300) succeeded.add(path);
        else problems.push(`GET ${url}: ${res.statusCode} ${res.body.slice(0, 200)}`);
        const allowed = allowedFor(path, url, ctx);
        const leaked = secretsIn(everything(res), allowed);
        if (leaked.length) problems.push(`GET ${url} leaks ${leaked.join(', ')}: ${res.body.slice(0, 400)}`);
        if (path === '/connections/{connection_id}' && res.statusCode === 200) {
          handoutChecks++;
          const handout = handouts[ctx.connection_id!]!;
          for (const v of handout.always) if (!res.body.includes(v)) problems.push(`GET ${url} does not hand out the connection's token`);
          const flagged = /[?&]refresh_token=true/.test(url);
          for (const v of handout.withFlag) {
            if (flagged && !res.body.includes(v)) problems.push(`GET ${url} omits the refresh token though asked for it`);
          }
        }
        if (isAuthToken(path) && res.statusCode === 200) {
          authTokenChecks++;
          const expected = handouts[ctx.connection_id!]!.authToken;
          if (!expected.includes(res.json().access_token))
            problems.push(`GET ${url} does not hand out the connection's token: ${res.body.slice(0, 300)}`);
        }
      }
    }
    expect(problems).toEqual([]);
    // Every GET route answered 2xx at least once, so the check read real data.
    expect([...succeeded].sort()).toEqual([...gets.map(([p]) => p), '/openapi.json'].sort());
    expect(handoutChecks).toBeGreaterThanOrEqual(2 * connections.length);
    // GET /auth/token and /v1/auth/token, each with and without force_refresh, for every connection.
    expect(authTokenChecks).toBeGreaterThanOrEqual(4 * connections.length);
    expect(calls).toBeGreaterThan(40);
  });

  it("the Nango-compatible connection GET hands out each auth mode's credentials as Nango does", async () => {
    const get = async (id: string, key: string, flag = '') =>
      (await t.call({ method: 'GET', url: `/connections/${id}?provider_config_key=${key}${flag}` })).json().credentials;
    const gh = await get('gh-user-1', 'gh');
    expect(gh).toMatchObject({ type: 'OAUTH2', access_token: S.ghAccess });
    expect(gh.refresh_token).toBeUndefined();
    expect(await get('gh-user-1', 'gh', '&refresh_token=true')).toMatchObject({ access_token: S.ghAccess, refresh_token: S.ghRefresh });
    expect((await get('gh-user-1', 'gh', '&refresh_token=false')).refresh_token).toBeUndefined();
    expect(await get('sg-user', 'sendgrid')).toEqual({ type: 'API_KEY', apiKey: S.sgApiKey });
    expect(await get('tw-user', 'twilio')).toEqual({ type: 'BASIC', username: TWILIO_USER, password: S.twPassword });
    const pp = await get('pp-user', 'paypal', '&refresh_token=true');
    expect(pp).toMatchObject({ type: 'OAUTH2_CC', token: S.ppAccess, client_id: 'pp-conn-client' });
    expect(JSON.stringify(pp)).not.toContain(S.ppConnClientSecret);
  });

  it('a refresh token inside the stored raw token response is not handed out without refresh_token=true', async () => {
    const rawAccess = secret('raw_access');
    const rawRefresh = secret('raw_refresh');
    const created = await t.call({
      method: 'POST',
      url: '/connection',
      payload: {
        connection_id: 'gh-raw',
        provider_config_key: 'gh',
        credentials: {
          access_token: rawAccess,
          refresh_token: rawRefresh,
          expires_in: 3600,
          raw: { access_token: rawAccess, refresh_token: rawRefresh, token_type: 'bearer', expires_in: 3600, scope: 'repo' },
        },
      },
    });
    expect(created.statusCode, created.body).toBe(200);
    expect(secretsIn(everything(created))).toEqual([]);
    for (const url of [
      '/connection/gh-raw?provider_config_key=gh',
      '/v1/connections/gh-raw?provider_config_key=gh',
      '/connections',
      '/connection',
    ]) {
      expect(secretsIn((await t.call({ method: 'GET', url })).body), url).toEqual([]);
    }

    const withFlag = await t.call({ method: 'GET', url: '/connections/gh-raw?provider_config_key=gh&refresh_token=true' });
    expect(withFlag.json().credentials).toMatchObject({ access_token: rawAccess, refresh_token: rawRefresh });

    // As Nango does: without the flag, the refresh token is removed from `raw` too.
    const plain = await t.call({ method: 'GET', url: '/connections/gh-raw?provider_config_key=gh' });
    expect(plain.statusCode).toBe(200);
    expect(plain.json().credentials.access_token).toBe(rawAccess);
    expect(plain.json().credentials.refresh_token).toBeUndefined();
    expect(plain.json().credentials.raw?.refresh_token, 'credentials.raw.refresh_token without refresh_token=true').toBeUndefined();
    expect(secretsIn(plain.body, [rawAccess])).toEqual([]);

    // GET /auth/token never hands out the refresh token, not even inside `raw`.
    for (const url of ['/auth/token/gh/gh-raw', '/v1/auth/token/gh/gh-raw']) {
      const res = await t.call({ method: 'GET', url });
      expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
      expect(res.json()).toMatchObject({ type: 'Bearer', access_token: rawAccess, raw: { access_token: rawAccess, token_type: 'bearer' } });
      expect(res.json().raw.refresh_token, `${url} raw.refresh_token`).toBeUndefined();
      expect(secretsIn(everything(res), [rawAccess]), url).toEqual([]);
    }
  });

  it("GET /auth/token hands out each auth mode's token (BASIC as base64 username:password), never a refresh token or client secret", async () => {
    const token = async (key: string, id: string) => {
      const res = await t.call({ method: 'GET', url: `/auth/token/${key}/${id}` });
      expect(res.statusCode, res.body).toBe(200);
      expect(secretsIn(everything(res), handouts[id]!.authToken), id).toEqual([]);
      return res.json();
    };
    expect(await token('gh', 'gh-user-1')).toMatchObject({ type: 'Bearer', access_token: S.ghAccess });
    expect(await token('sendgrid', 'sg-user')).toEqual({ type: 'ApiKey', access_token: S.sgApiKey, raw: {} });
    expect(await token('twilio', 'tw-user')).toEqual({ type: 'Basic', access_token: TWILIO_BASIC, raw: {} });
    expect(Buffer.from(TWILIO_BASIC, 'base64').toString()).toBe(`${TWILIO_USER}:${S.twPassword}`);
    expect(await token('paypal', 'pp-user')).toMatchObject({ type: 'Bearer', access_token: S.ppAccess });
    expect(await token('sg-local', connect.sgConnectionId)).toEqual({ type: 'ApiKey', access_token: S.connectApiKey, raw: {} });
    // Another environment's key never reaches these connections.
    const other = await t.newEnvironment('other');
    const miss = await t.call({ method: 'GET', url: '/auth/token/gh/gh-user-1', key: other.key });
    expect(miss.statusCode).toBe(404);
    expect(secretsIn(everything(miss))).toEqual([]);
  });

  it('connect sessions hand out their token once; the Connect pages and OAuth endpoints never show a secret', () => {
    for (const [res, token] of [
      [connect.createRes, connect.token],
      [connect.reconnectRes, connect.reconnectToken],
    ] as const) {
      const data = res.json().data;
      expect(data.token).toBe(token);
      expect(token).toMatch(/^terapi_cs_[A-Za-z0-9_-]{43}$/);
      expect(data.connect_link).toBe(`${defaultTestConfig.serverUrl}/connect?session_token=${token}`);
      // Its own token only (in `token` and in the link): no other session's, no key, no client secret.
      expect(secretsIn(everything(res), [token])).toEqual([]);
    }
    expect(connect.token).not.toBe(connect.reconnectToken);

    expect(connect.responses.length).toBeGreaterThanOrEqual(30);
    const problems: string[] = [];
    for (const { label, res, allowed, cookie } of connect.responses) {
      const { 'set-cookie': setCookie, ...headers } = res.headers;
      const leaked = secretsIn(`${JSON.stringify(headers)}\n${res.body}`, allowed);
      if (leaked.length)
        problems.push(
          `${label} (${res.statusCode}) shows ${leaked.join(', ')}: ${res.body.slice(0, 300)} ${JSON.stringify(headers).slice(0, 300)}`,
        );
      const inCookie = secretsIn(JSON.stringify(setCookie ?? ''), cookie ? [...allowed, cookie] : allowed);
      if (inCookie.length) problems.push(`${label} sets a cookie with ${inCookie.join(', ')}`);
      if (cookie && !String(setCookie).includes(encodeURIComponent(cookie)))
        problems.push(`${label} did not move the session token into the cookie`);
      if (String(res.headers['content-type'] ?? '').startsWith('text/html')) {
        // Every Connect page: no caching, no Referer, a script nonce that matches the CSP.
        expect(res.headers['cache-control'], label).toBe('no-store');
        expect(res.headers['referrer-policy'], label).toBe('no-referrer');
        const nonce = /<script nonce="([^"]+)"/.exec(res.body)?.[1];
        if (nonce) expect(String(res.headers['content-security-policy']), label).toContain(`'nonce-${nonce}'`);
      }
    }
    expect(problems).toEqual([]);

    // The flows did what they say (so the checks above read real pages).
    const byLabel = (label: string) => connect.responses.find((r) => r.label === label)!.res;
    expect(byLabel('GET /connect (list)').body).toContain('/connect/i/sg-local');
    expect(byLabel('GET /connect/i/sg-local (API key form)').body).toContain('name="api_key"');
    expect(byLabel('POST /connect/i/sg-local wrong key').body).toContain('Invalid API key');
    expect(String(byLabel('GET /connect/i/fixture (OAuth start)').headers.location)).toContain(`${oauthServer.authorizationUrl}?`);
    expect(String(byLabel('GET /connect/i/fixture (OAuth start)').headers.location)).toContain('code_challenge=');
    expect(byLabel('GET /connect/session').json().data.end_user).toMatchObject({ id: CONNECT_USER });
    expect(byLabel('GET /connect/session (reconnect)').json().data.is_reconnect).toBe(true);
  });

  it('webhook settings hand out the signing secret once, when created or rotated; GET shows only its hint', async () => {
    const created = fn.putRes.json();
    expect(created.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(created.secret_hint).toBe(`${fn.secret.slice(0, 10)}…`);
    expect(secretsIn(everything(fn.putRes), [fn.secret])).toEqual([]);
    // Setting the URLs again keeps the secret and does not show it.
    expect(fn.putAgainRes.json()).toEqual({ urls: [receiver.url], secret_hint: created.secret_hint, previous_secret_expires_at: null });
    expect(secretsIn(everything(fn.putAgainRes))).toEqual([]);
    // The rotation shows the new secret only (the previous one keeps signing during the overlap).
    const rotated = fn.rotateRes.json();
    expect(rotated.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(rotated.secret).not.toBe(fn.secret);
    expect(rotated.previous_secret_expires_at).toEqual(expect.any(String));
    expect(secretsIn(everything(fn.rotateRes), [fn.rotatedSecret])).toEqual([]);
    // GET, then and now: the hint of the current secret, never a secret.
    for (const res of [fn.getRes, await t.call({ method: 'GET', url: '/environment/webhooks' })]) {
      expect(res.statusCode).toBe(200);
      expect(Object.keys(res.json()).sort()).toEqual(['previous_secret_expires_at', 'secret_hint', 'urls']);
      expect(res.json().secret_hint).toBe(`${fn.rotatedSecret.slice(0, 10)}…`);
      expect(secretsIn(everything(res))).toEqual([]);
    }

    // The deliveries were signed with both secrets (the rotation overlap), and carry neither, nor any other secret.
    expect(receiver.received.length).toBeGreaterThanOrEqual(2);
    const types = new Set<string>();
    for (const hook of receiver.received) {
      types.add(String(hook.headers['terapi-event']));
      const signature = String(hook.headers['terapi-signature']);
      expect(signature.match(/v1=/g)).toHaveLength(2);
      expect(verifySignature(signature, hook.body, fn.rotatedSecret)).toBe(true);
      expect(verifySignature(signature, hook.body, fn.secret)).toBe(true);
      expect(secretsIn(`${JSON.stringify(hook.headers)}\n${hook.body}`)).toEqual([]);
    }
    expect([...types].sort()).toEqual(expect.arrayContaining(['async_action', 'sync']));
  });

  it("syncs and actions ran with the connection's token; their answers, records, runs and logs show no secret", async () => {
    // The token was used (so the checks below would have seen it leak).
    expect(github.state.requests.filter((r) => String(r.headers.authorization).includes(S.ghSyncAccess)).length).toBeGreaterThan(2);
    const problems: string[] = [];
    for (const { label, res } of fn.responses) {
      const leaked = secretsIn(everything(res));
      if (leaked.length) problems.push(`${label} (${res.statusCode}) shows ${leaked.join(', ')}: ${res.body.slice(0, 300)}`);
    }
    expect(problems).toEqual([]);
    const refused = fn.responses.find((r) => r.label === 'POST /action/trigger (provider error)')!.res.json();
    expect(refused).toMatchObject({ error: 'provider_error', upstream: { status: 404 } });

    // What the GET sweep read is real: records of the fake's issues, runs with logs, the actions' outcomes.
    const get = async (url: string, headers?: Record<string, string>) => {
      const res = await t.call({ method: 'GET', url, headers });
      expect(res.statusCode, `${url}: ${res.body}`).toBe(200);
      expect(secretsIn(everything(res)), url).toEqual([]);
      return res.json();
    };
    const records = await get('/records?model=GithubIssue&limit=1000', {
      'connection-id': SYNC_CONNECTION,
      'provider-config-key': 'gh-sync',
    });
    expect(records.records.map((r: { title: string }) => r.title)).toContain(ISSUE_MARKER);
    for (const id of [fn.syncRun, fn.actionRun, fn.asyncActionRun, fn.failedActionRun]) {
      expect((await get(`/runs/${id}/logs?limit=1000`)).logs.length, id).toBeGreaterThan(0);
    }
    expect((await get(`/action/${fn.failedActionRun}`)).upstream).toMatchObject({ status: 404 });
    expect((await get(`/action/${fn.asyncActionRun}`)).status).toBe('success');
  });

  it('admin create-environment and rotate-secret-key return the new key once; other admin responses never do', async () => {
    const created = admin.createRes.json().data;
    expect(created.secret_key).toMatch(/^terapi_sk_[A-Za-z0-9_-]{43}$/);
    expect(created.secret_key_hint).toBe(`${created.secret_key.slice(0, 14)}…`);
    expect(secretsIn(everything(admin.createRes), [admin.createdKey])).toEqual([]);

    const rotated = admin.rotateRes.json().data;
    expect(rotated.secret_key).toMatch(/^terapi_sk_[A-Za-z0-9_-]{43}$/);
    expect(rotated.secret_key).not.toBe(created.secret_key);
    expect(secretsIn(everything(admin.rotateRes), [admin.rotatedKey])).toEqual([]);

    // The old key stopped working, the new one works, and neither shows up again.
    expect((await t.call({ method: 'GET', url: '/integration', key: admin.createdKey })).statusCode).toBe(401);
    expect((await t.call({ method: 'GET', url: '/integration', key: admin.rotatedKey })).statusCode).toBe(200);
    for (const url of [
      '/admin/accounts',
      `/admin/accounts/${admin.accountId}`,
      `/admin/accounts/${admin.accountId}/environments`,
      '/admin/environments',
      `/admin/environments/${admin.environmentId}`,
      `/admin/environments/${t.env.id}`,
    ]) {
      const res = await t.call({ method: 'GET', url, key: ADMIN_KEY });
      expect(res.statusCode, url).toBe(200);
      expect(secretsIn(everything(res)), url).toEqual([]);
    }
  });

  it('failed requests carrying secrets do not echo them', async () => {
    const failures: { label: string; status: number; opts: Parameters<TestApp['call']>[0] }[] = [
      {
        label: 'OAUTH2 credentials with a stray field',
        status: 400,
        opts: {
          method: 'POST',
          url: '/connection',
          payload: {
            connection_id: 'bad-1',
            provider_config_key: 'gh',
            credentials: { access_token: secret('err_access'), client_secret: secret('err_stray') },
          },
        },
      },
      {
        label: 'credentials of the wrong auth mode',
        status: 400,
        opts: {
          method: 'POST',
          url: '/v1/connections',
          payload: {
            connection_id: 'bad-2',
            provider_config_key: 'gh',
            credentials: { type: 'API_KEY', api_key: secret('err_wrong_mode') },
          },
        },
      },
      {
        label: 'credentials with a wrongly typed secret',
        status: 400,
        opts: {
          method: 'POST',
          url: '/connections',
          payload: {
            provider_config_key: 'twilio',
            connection_id: 'bad-3',
            credentials: { username: 'u', password: { value: secret('err_typed_password') } },
          },
        },
      },
      {
        label: 'credentials for an unknown integration',
        status: 400,
        opts: {
          method: 'POST',
          url: '/connection',
          payload: {
            connection_id: 'bad-4',
            provider_config_key: 'nope',
            credentials: { access_token: secret('err_unknown_integration') },
          },
        },
      },
      {
        label: 'an OAuth client secret for an API_KEY provider',
        status: 400,
        opts: {
          method: 'POST',
          url: '/integration',
          payload: {
            provider_config_key: 'bad-int',
            provider: 'sendgrid',
            oauth_client_id: 'x',
            oauth_client_secret: secret('err_client_secret'),
          },
        },
      },
      {
        label: 'an invalid key next to a client secret',
        status: 400,
        opts: {
          method: 'POST',
          url: '/integration',
          payload: {
            provider_config_key: 'bad key',
            provider: 'github',
            oauth_client_id: 'x',
            oauth_client_secret: secret('err_bad_key_secret'),
          },
        },
      },
      {
        label: 'a bad secret name',
        status: 400,
        opts: {
          method: 'POST',
          url: '/integrations',
          payload: {
            unique_key: 'bad-int-2',
            provider: 'github',
            credentials: { type: 'OAUTH2', client_id: 'x', client_secret: secret('err_nango_client_secret') },
            secrets: { 'bad name': secret('err_bad_secret_name') },
          },
        },
      },
      {
        label: 'an empty client id with a client secret',
        status: 400,
        opts: {
          method: 'PATCH',
          url: '/integrations/gh',
          payload: { credentials: { type: 'OAUTH2', client_id: '', client_secret: secret('err_patch_secret') } },
        },
      },
      {
        label: 'a duplicate integration carrying a secret',
        status: 409,
        opts: {
          method: 'POST',
          url: '/integration',
          payload: {
            provider_config_key: 'gh',
            provider: 'github',
            oauth_client_id: 'x',
            oauth_client_secret: secret('err_duplicate_secret'),
          },
        },
      },
      {
        label: 'malformed JSON around a secret',
        status: 400,
        opts: {
          method: 'POST',
          url: '/integration',
          headers: { 'content-type': 'application/json' },
          payload: `{"provider_config_key":"x","provider":"github","oauth_client_secret":"${secret('err_malformed_json')}",`,
        },
      },
      {
        label: 'a body over the size limit',
        status: 413,
        opts: {
          method: 'POST',
          url: '/connection',
          headers: { 'content-type': 'application/json' },
          payload: JSON.stringify({
            connection_id: 'big',
            provider_config_key: 'gh',
            credentials: { access_token: secret('err_too_large') },
            pad: 'x'.repeat(1024 * 1024),
          }),
        },
      },
      {
        label: 'a body of the wrong media type',
        status: 415,
        opts: {
          method: 'POST',
          url: '/integration',
          headers: { 'content-type': 'application/xml' },
          payload: `<client_secret>${secret('err_media_type')}</client_secret>`,
        },
      },
      {
        label: 'metadata for a missing connection',
        status: 404,
        opts: {
          method: 'POST',
          url: '/connection/metadata',
          payload: { connection_id: 'missing', provider_config_key: 'gh', metadata: { token: secret('err_metadata') } },
        },
      },
      {
        label: 'a bearer token of no environment',
        status: 401,
        opts: { method: 'GET', url: '/connection', key: `terapi_sk_${secret('err_bearer')}` },
      },
      {
        label: 'a bearer token of no environment on a write',
        status: 401,
        opts: {
          method: 'POST',
          url: '/integration',
          key: secret('err_bearer_write'),
          payload: { provider_config_key: 'z', provider: 'github', oauth_client_secret: secret('err_unauth_body') },
        },
      },
      {
        label: 'a malformed authorization header',
        status: 401,
        opts: { method: 'GET', url: '/integration', key: null, headers: { authorization: `Token ${secret('err_auth_scheme')}` } },
      },
      { label: 'a wrong admin key', status: 401, opts: { method: 'GET', url: '/admin/accounts', key: secret('err_admin_key') } },
      { label: 'an environment key on the admin API', status: 403, opts: { method: 'GET', url: '/admin/environments', key: t.env.key } },
      { label: 'a rotated-away key', status: 401, opts: { method: 'GET', url: '/connection', key: admin.createdKey } },
      { label: 'an unknown route', status: 404, opts: { method: 'GET', url: '/nowhere', key: secret('err_unknown_route_key') } },
    ];
    const problems: string[] = [];
    for (const f of failures) {
      const res = await t.call(f.opts);
      if (res.statusCode !== f.status) problems.push(`${f.label}: ${res.statusCode} (expected ${f.status}) ${res.body.slice(0, 300)}`);
      const leaked = secretsIn(everything(res));
      if (leaked.length) problems.push(`${f.label}: response echoes ${leaked.join(', ')}: ${res.body.slice(0, 300)}`);
    }
    expect(problems).toEqual([]);
  });

  it('a server error (undecryptable secrets) neither returns nor logs a secret', async () => {
    // Another process with the wrong encryption key, on the same database.
    const wrongVault = createVault([{ id: 'test', key: randomBytes(32) }]);
    const other = await createTestApp({ db: t.db, vault: wrongVault });
    try {
      for (const url of [
        '/connections/gh-user-1?provider_config_key=gh&refresh_token=true',
        '/connections/tw-user?provider_config_key=twilio',
        '/integrations',
        '/integrations/gh',
      ]) {
        const res = await other.call({ method: 'GET', url, key: t.env.key });
        expect(res.statusCode, `${url}: ${res.body}`).toBe(500);
        expect(res.json().error).toBe('internal_error');
        expect(secretsIn(everything(res)), url).toEqual([]);
      }
      expect(
        other.logs.some((l) => JSON.parse(l).level >= 50),
        'the 5xx was logged',
      ).toBe(true);
      const leaking = other.logs.filter((l) => secretsIn(l).length);
      expect(leaking.map((l) => `${secretsIn(l).join(', ')}: ${l.slice(0, 300)}`)).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('no log line contains a secret', () => {
    // The logs saw the work above: successes, 4xx of every kind, and the workers' syncs and actions.
    expect(t.logs.length).toBeGreaterThan(100);
    expect(
      t.logs.some((l) => JSON.parse(l).msg === 'sync run finished'),
      'a sync run was logged',
    ).toBe(true);
    expect(
      t.logs.some((l) => JSON.parse(l).url === '/environment/webhooks/rotate-secret'),
      'the secret rotation was logged',
    ).toBe(true);
    const statuses = new Set(t.logs.map((l) => JSON.parse(l).status).filter(Boolean));
    for (const status of [200, 201, 204, 302, 303, 400, 401, 403, 404, 409, 413, 415])
      expect(statuses, `a logged ${status}`).toContain(status);
    const leaking = t.logs.filter((l) => secretsIn(l).length);
    expect(leaking.map((l) => `${secretsIn(l).join(', ')}: ${l.slice(0, 300)}`)).toEqual([]);

    // Request URLs are logged: the connect link, /oauth/connect and the OAuth callback carry one-time
    // credentials in their query, so those requests must have been logged (the check above is not
    // vacuous) with the values redacted.
    const urls = t.logs.map((l) => JSON.parse(l).url).filter((u): u is string => typeof u === 'string');
    for (const [path, param] of [
      ['/connect', 'session_token'],
      ['/oauth/connect/fixture', 'connect_session_token'],
      ['/oauth/callback', 'code'],
      ['/oauth/callback', 'state'],
    ] as const) {
      const logged = urls.filter((u) => u.startsWith(`${path}?`) && u.includes(`${param}=`));
      expect(logged.length, `logged ${path}?${param}=`).toBeGreaterThan(0);
      for (const u of logged) expect(new URLSearchParams(u.split('?')[1]).get(param), u).toBe('[redacted]');
    }
  });

  it('percent-encoded query parameter names do not carry one-time credentials past the log redaction', async () => {
    // Fastify decodes parameter names (`session%5Ftoken` is `session_token`), so each request below
    // is accepted as its plain form is; the request log must redact its value as it does the plain name's.
    const created = await t.call({ method: 'POST', url: '/connect/sessions', payload: { end_user: { id: 'encoded-names-user' } } });
    expect(created.statusCode, created.body).toBe(201);
    const token: string = created.json().data.token;
    const from = t.logs.length;

    const link = await browser('GET', `/connect?session%5Ftoken=${token}`);
    expect(link.statusCode, 'the encoded name opens the link').toBe(303);
    expect(String(link.headers['set-cookie'])).toContain(encodeURIComponent(token));
    const start = await browser('GET', `/oauth/connect/fixture?connect%5Fsession%5Ftoken=${token}`);
    expect(start.statusCode, 'the encoded name starts the flow').toBe(302);
    const redirect = await oauthServer.authorize(String(start.headers.location));
    const code = redirect.searchParams.get('code')!;
    const state = redirect.searchParams.get('state')!;
    const done = await browser('GET', `/oauth/callback?st%61te=${encodeURIComponent(state)}&c%6Fde=${encodeURIComponent(code)}`);
    expect(done.statusCode, 'the encoded names complete the flow').toBe(200);

    const logged = t.logs.slice(from);
    expect(logged.some((l) => JSON.parse(l).url?.startsWith('/connect?session_token='))).toBe(true);
    const leaking = (
      [
        ['connect session token', token],
        ['authorization code', code],
        ['state', state],
      ] as const
    ).flatMap(([label, value]) => logged.filter((l) => l.includes(value)).map((l) => `${label}: ${JSON.parse(l).url ?? l.slice(0, 200)}`));
    expect(leaking).toEqual([]);
  });

  it('the database holds no secret in plaintext; environment keys only as SHA-256', async () => {
    const rows = <T>(query: SQL) => queryRows<T>(t.db.database.db, query);
    const tables = (
      await rows<{ name: string }>(
        sql`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`,
      )
    ).map((r) => String(r.name));
    for (const table of [
      'accounts',
      'environments',
      'integrations',
      'connections',
      'connect_sessions',
      'oauth_sessions',
      'events',
      'function_configs',
      'syncs',
      'runs',
      'run_logs',
      'records',
      'webhook_settings',
      'webhook_deliveries',
    ]) {
      expect(tables).toContain(table);
    }

    const dump: string[] = [];
    for (const table of tables) {
      for (const r of await rows<{ row: string }>(sql`SELECT x::text AS row FROM ${sql.identifier(table)} x`))
        dump.push(`${table}: ${r.row}`);
    }
    const all = dump.join('\n');
    // The dump is real: it holds the fixture's non-secret values.
    for (const marker of [
      'gh-user-1',
      'pp-client-id',
      'seats',
      'gh-client-id',
      CONNECT_USER,
      connect.oauthConnectionId,
      connect.sgConnectionId,
      ISSUE_MARKER,
      'github issue created',
      fn.failedActionRun,
      receiver.url,
    ]) {
      expect(all).toContain(marker);
    }
    const leaking = dump.filter((line) => secretsIn(line).length);
    expect(leaking.map((line) => `${secretsIn(line).join(', ')}: ${line.slice(0, 200)}`)).toEqual([]);

    const sha = (k: string) => createHash('sha256').update(k).digest('hex');
    const envs = await rows<{ id: string; secret_key_hash: string }>(sql`SELECT id::text AS id, secret_key_hash FROM environments`);
    const byId = new Map(envs.map((e) => [e.id, e]));
    expect(byId.get(t.env.id)?.secret_key_hash).toBe(sha(t.env.key));
    expect(byId.get(admin.environmentId)?.secret_key_hash).toBe(sha(admin.rotatedKey));
    for (const e of envs) expect(e.secret_key_hash).toMatch(/^[0-9a-f]{64}$/);

    // Secret columns hold vault ciphertexts.
    const integrations = await rows<{ unique_key: string; oauth_client_secret_enc: string | null; secrets_enc: string | null }>(
      sql`SELECT unique_key, oauth_client_secret_enc, secrets_enc FROM integrations WHERE environment_id = ${t.env.id}`,
    );
    const gh = integrations.find((i) => i.unique_key === 'gh')!;
    expect(gh.oauth_client_secret_enc).toMatch(/^v1:test:/);
    expect(gh.secrets_enc).toMatch(/^v1:test:/);
    const creds = await rows<{ connection_id: string; credentials_enc: string }>(
      sql`SELECT connection_id, credentials_enc FROM connections WHERE environment_id = ${t.env.id}`,
    );
    expect(creds.length).toBeGreaterThanOrEqual(connections.length);
    for (const c of creds) expect(c.credentials_enc, c.connection_id).toMatch(/^v1:test:/);
    // The webhook signing secrets (current and, during the overlap, previous) as vault ciphertexts.
    const [hooks] = await rows<{ secret_enc: string; previous_secret_enc: string | null }>(
      sql`SELECT secret_enc, previous_secret_enc FROM webhook_settings WHERE environment_id = ${t.env.id}`,
    );
    expect(hooks?.secret_enc).toMatch(/^v1:test:/);
    expect(hooks?.previous_secret_enc).toMatch(/^v1:test:/);

    // Connect session tokens only as SHA-256; a deleted session is gone.
    const sessions = (await rows<{ token_hash: string }>(sql`SELECT token_hash FROM connect_sessions`)).map((s) => s.token_hash);
    expect(sessions).toEqual(expect.arrayContaining([sha(connect.token), sha(connect.reconnectToken)]));
    expect(sessions).not.toContain(sha(connect.deletedToken));
    for (const h of sessions) expect(h).toMatch(/^[0-9a-f]{64}$/);
    // OAuth flows: state only as SHA-256, PKCE verifiers as vault ciphertexts.
    const flows = await rows<{ state_hash: string; code_verifier_enc: string | null }>(
      sql`SELECT state_hash, code_verifier_enc FROM oauth_sessions`,
    );
    expect(flows.map((f) => f.state_hash)).toContain(sha(connect.state));
    for (const f of flows) expect(f.state_hash).toMatch(/^[0-9a-f]{64}$/);
    const verifiers = flows.map((f) => f.code_verifier_enc).filter((v): v is string => v !== null);
    expect(verifiers.length, 'the fixture flow used PKCE').toBeGreaterThan(0);
    for (const v of verifiers) expect(v).toMatch(/^v1:test:/);
    // Events were written for the connections the Connect page created (and the dump above shows no secret in them).
    const events = await rows<{ connection_id: string }>(sql`SELECT connection_id FROM events`);
    expect(events.map((e) => e.connection_id)).toEqual(expect.arrayContaining([connect.oauthConnectionId, connect.sgConnectionId]));
  });
});
