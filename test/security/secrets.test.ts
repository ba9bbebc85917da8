/**
 * Secrets (DESIGN.md, Invariants): OAuth client secrets, integration secrets, provider credentials
 * and secret keys never appear in an API response — except where the route's purpose is to hand
 * out a token — never in a log line, and never in plaintext in the database.
 *
 * Every secret below is a unique random value, so finding it anywhere is a leak. Each check looks
 * for the whole value and for its random core (a response or log that truncated or re-prefixed a
 * secret still leaks it).
 */
import { createHash, randomBytes } from 'node:crypto';
import { type SQL, sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createVault } from '../../src/lib/vault.js';
import { ADMIN_KEY, createTestApp, type TestApp } from '../helpers/app.js';

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
};
const TWILIO_USER = 'AC0123456789abcdef';

/** What the token-handout route returns for each connection: always, and with `refresh_token=true`. */
const handouts: Record<string, { always: string[]; withFlag: string[] }> = {
  'gh-user-1': { always: [S.ghAccess], withFlag: [S.ghRefresh] },
  'gh-user-2': { always: [S.ghAccess2b], withFlag: [S.ghRefresh2b] },
  'sg-user': { always: [S.sgApiKey], withFlag: [] },
  'tw-user': { always: [S.twPassword], withFlag: [] },
  'pp-user': { always: [S.ppAccess], withFlag: [] },
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
const admin = { accountId: '', environmentId: '', createdKey: '', rotatedKey: '', createRes: undefined as unknown as LightMyRequestResponse, rotateRes: undefined as unknown as LightMyRequestResponse };

async function write(label: string, opts: Parameters<TestApp['call']>[0], status = 200) {
  const res = await t.call(opts);
  expect(res.statusCode, `${label}: ${res.body}`).toBe(status);
  writes.push({ label, res });
  return res;
}

beforeAll(async () => {
  t = await createTestApp();
  registerSecret('environment secret key', t.env.key, 'terapi_sk_'.length + 4);
  registerSecret('admin key', ADMIN_KEY, 'admin_'.length);
  known.push({
    label: 'twilio basic auth header',
    value: Buffer.from(`${TWILIO_USER}:${S.twPassword}`).toString('base64'),
    cores: [Buffer.from(`${TWILIO_USER}:${S.twPassword}`).toString('base64')],
  });

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
    payload: { provider_config_key: 'paypal', provider: 'paypal', oauth_client_id: 'pp-client-id', oauth_client_secret: S.paypalClientSecret },
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
    payload: { connection_id: 'gh-user-2', provider_config_key: 'gh', credentials: { access_token: S.ghAccess2b, refresh_token: S.ghRefresh2b } },
  });
  await write(
    'POST /connections sendgrid',
    { method: 'POST', url: '/connections', payload: { provider_config_key: 'sendgrid', connection_id: 'sg-user', credentials: { apiKey: S.sgApiKey } } },
    201,
  );
  await write(
    'POST /connections twilio',
    {
      method: 'POST',
      url: '/connections',
      payload: { provider_config_key: 'twilio', connection_id: 'tw-user', credentials: { type: 'BASIC', username: TWILIO_USER, password: S.twPassword } },
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
  admin.createRes = await t.call({ method: 'POST', url: `/admin/accounts/${admin.accountId}/environments`, key: ADMIN_KEY, payload: { name: 'prod' } });
  expect(admin.createRes.statusCode, admin.createRes.body).toBe(201);
  admin.environmentId = admin.createRes.json().data.id;
  admin.createdKey = admin.createRes.json().data.secret_key;
  admin.rotateRes = await t.call({ method: 'POST', url: `/admin/environments/${admin.environmentId}/rotate-secret-key`, key: ADMIN_KEY });
  expect(admin.rotateRes.statusCode, admin.rotateRes.body).toBe(200);
  admin.rotatedKey = admin.rotateRes.json().data.secret_key;
  registerSecret('admin-created environment key', admin.createdKey, 'terapi_sk_'.length + 4);
  registerSecret('rotated environment key', admin.rotatedKey, 'terapi_sk_'.length + 4);
});
afterAll(async () => t?.close());

// ---------------------------------------------------------------------------------------------
// OpenAPI: every GET route, with its parameters filled from the fixture
// ---------------------------------------------------------------------------------------------

interface Param {
  name: string;
  in: string;
  required?: boolean;
  schema?: any;
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
  }));
  out.push({ provider_config_key: 'slack', integrationId: 'slack', unique_key: 'slack', name: 'slack' });
  out.push({ account_id: t.env.accountId, environment_id: t.env.id });
  out.push({ account_id: admin.accountId, environment_id: admin.environmentId });
  return out;
}

const isBooleanParam = (p: Param) => p.schema?.type === 'boolean' || (Array.isArray(p.schema?.enum) && p.schema.enum.includes('true'));

/** URLs for a GET route: required parameters only, every known parameter, and every flag on. */
function urlsFor(path: string, params: Param[]): { url: string; ctx: Record<string, string> }[] {
  const out = new Map<string, Record<string, string>>();
  for (const ctx of contexts()) {
    const pathParams = [...path.matchAll(/\{([^}]+)\}/g)].map((m) => m[1]!);
    if (!pathParams.every((n) => ctx[n] !== undefined)) continue;
    const url = path.replace(/\{([^}]+)\}/g, (_m, n: string) => encodeURIComponent(ctx[n]!));
    const query = params.filter((p) => p.in === 'query');
    if (query.some((p) => p.required && ctx[p.name] === undefined)) continue;
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
      out.set(qs ? `${url}?${qs}` : url, ctx);
    }
  }
  return [...out].map(([url, ctx]) => ({ url, ctx }));
}

/** The secrets a route may return: the token-handout routes return the connection's own credentials. */
function allowedFor(path: string, url: string, ctx: Record<string, string>): string[] {
  const handout = handouts[ctx.connection_id ?? ''];
  if (!handout) return [];
  if (path === '/connections/{connection_id}') {
    return [...handout.always, ...(/[?&]refresh_token=(true|1)\b/.test(url) ? handout.withFlag : [])];
  }
  if (/^(\/v1)?\/auth\/token\//.test(path)) return handout.always;
  return [];
}

// ---------------------------------------------------------------------------------------------

describe('secrets never leave through responses, logs or the database', () => {
  it('create and update responses carry no secret', () => {
    expect(writes.length).toBeGreaterThanOrEqual(17);
    for (const { label, res } of writes) expect(secretsIn(everything(res)), label).toEqual([]);
  });

  it('every GET route returns no secret, except the token handout (access token always, refresh token only on request)', async () => {
    const doc = (await t.call({ method: 'GET', url: '/openapi.json', key: null })).json() as {
      paths: Record<string, Record<string, { parameters?: Param[] }>>;
    };
    const problems: string[] = [];
    const succeeded = new Set<string>();
    const gets = Object.entries(doc.paths).filter(([, ops]) => ops.get);
    expect(gets.length).toBeGreaterThanOrEqual(20);
    let calls = 0;
    let handoutChecks = 0;

    for (const [path, ops] of [...gets, ['/openapi.json', { get: {} }] as const]) {
      for (const { url, ctx } of urlsFor(path, ops.get?.parameters ?? [])) {
        const key = path.startsWith('/admin') ? ADMIN_KEY : t.env.key;
        const res = await t.call({ method: 'GET', url, key });
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
      }
    }
    expect(problems).toEqual([]);
    // Every GET route answered 2xx at least once, so the check read real data.
    expect([...succeeded].sort()).toEqual([...gets.map(([p]) => p), '/openapi.json'].sort());
    expect(handoutChecks).toBeGreaterThanOrEqual(2 * connections.length);
    expect(calls).toBeGreaterThan(40);
  });

  it('the Nango-compatible connection GET hands out each auth mode\'s credentials as Nango does', async () => {
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
    for (const url of ['/connection/gh-raw?provider_config_key=gh', '/v1/connections/gh-raw?provider_config_key=gh', '/connections', '/connection']) {
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
          payload: { connection_id: 'bad-1', provider_config_key: 'gh', credentials: { access_token: secret('err_access'), client_secret: secret('err_stray') } },
        },
      },
      {
        label: 'credentials of the wrong auth mode',
        status: 400,
        opts: {
          method: 'POST',
          url: '/v1/connections',
          payload: { connection_id: 'bad-2', provider_config_key: 'gh', credentials: { type: 'API_KEY', api_key: secret('err_wrong_mode') } },
        },
      },
      {
        label: 'credentials with a wrongly typed secret',
        status: 400,
        opts: {
          method: 'POST',
          url: '/connections',
          payload: { provider_config_key: 'twilio', connection_id: 'bad-3', credentials: { username: 'u', password: { value: secret('err_typed_password') } } },
        },
      },
      {
        label: 'credentials for an unknown integration',
        status: 400,
        opts: {
          method: 'POST',
          url: '/connection',
          payload: { connection_id: 'bad-4', provider_config_key: 'nope', credentials: { access_token: secret('err_unknown_integration') } },
        },
      },
      {
        label: 'an OAuth client secret for an API_KEY provider',
        status: 400,
        opts: {
          method: 'POST',
          url: '/integration',
          payload: { provider_config_key: 'bad-int', provider: 'sendgrid', oauth_client_id: 'x', oauth_client_secret: secret('err_client_secret') },
        },
      },
      {
        label: 'an invalid key next to a client secret',
        status: 400,
        opts: {
          method: 'POST',
          url: '/integration',
          payload: { provider_config_key: 'bad key', provider: 'github', oauth_client_id: 'x', oauth_client_secret: secret('err_bad_key_secret') },
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
          payload: { provider_config_key: 'gh', provider: 'github', oauth_client_id: 'x', oauth_client_secret: secret('err_duplicate_secret') },
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
          payload: JSON.stringify({ connection_id: 'big', provider_config_key: 'gh', credentials: { access_token: secret('err_too_large') }, pad: 'x'.repeat(1024 * 1024) }),
        },
      },
      {
        label: 'a body of the wrong media type',
        status: 415,
        opts: { method: 'POST', url: '/integration', headers: { 'content-type': 'application/xml' }, payload: `<client_secret>${secret('err_media_type')}</client_secret>` },
      },
      {
        label: 'metadata for a missing connection',
        status: 404,
        opts: { method: 'POST', url: '/connection/metadata', payload: { connection_id: 'missing', provider_config_key: 'gh', metadata: { token: secret('err_metadata') } } },
      },
      { label: 'a bearer token of no environment', status: 401, opts: { method: 'GET', url: '/connection', key: `terapi_sk_${secret('err_bearer')}` } },
      {
        label: 'a bearer token of no environment on a write',
        status: 401,
        opts: { method: 'POST', url: '/integration', key: secret('err_bearer_write'), payload: { provider_config_key: 'z', provider: 'github', oauth_client_secret: secret('err_unauth_body') } },
      },
      { label: 'a malformed authorization header', status: 401, opts: { method: 'GET', url: '/integration', key: null, headers: { authorization: `Token ${secret('err_auth_scheme')}` } } },
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
      for (const url of ['/connections/gh-user-1?provider_config_key=gh&refresh_token=true', '/connections/tw-user?provider_config_key=twilio', '/integrations', '/integrations/gh']) {
        const res = await other.call({ method: 'GET', url, key: t.env.key });
        expect(res.statusCode, `${url}: ${res.body}`).toBe(500);
        expect(res.json().error).toBe('internal_error');
        expect(secretsIn(everything(res)), url).toEqual([]);
      }
      expect(other.logs.some((l) => JSON.parse(l).level >= 50), 'the 5xx was logged').toBe(true);
      const leaking = other.logs.filter((l) => secretsIn(l).length);
      expect(leaking.map((l) => `${secretsIn(l).join(', ')}: ${l.slice(0, 300)}`)).toEqual([]);
    } finally {
      await other.close();
    }
  });

  it('no log line contains a secret', () => {
    // The logs saw the work above: successes, 4xx of every kind.
    expect(t.logs.length).toBeGreaterThan(100);
    const statuses = new Set(t.logs.map((l) => JSON.parse(l).res?.statusCode).filter(Boolean));
    for (const status of [200, 201, 400, 401, 403, 404, 409, 413, 415]) expect(statuses, `a logged ${status}`).toContain(status);
    const leaking = t.logs.filter((l) => secretsIn(l).length);
    expect(leaking.map((l) => `${secretsIn(l).join(', ')}: ${l.slice(0, 300)}`)).toEqual([]);
  });

  it('the database holds no secret in plaintext; environment keys only as SHA-256', async () => {
    const rows = async <T>(query: SQL) => ((await t.db.database.db.execute(query)) as unknown as { rows: T[] }).rows;
    const tables = (
      await rows<{ name: string }>(sql`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1`)
    ).map((r) => String(r.name));
    for (const table of ['accounts', 'environments', 'integrations', 'connections']) expect(tables).toContain(table);

    const dump: string[] = [];
    for (const table of tables) {
      for (const r of await rows<{ row: string }>(sql`SELECT x::text AS row FROM ${sql.identifier(table)} x`)) dump.push(`${table}: ${r.row}`);
    }
    const all = dump.join('\n');
    // The dump is real: it holds the fixture's non-secret values.
    for (const marker of ['gh-user-1', 'pp-client-id', 'seats', 'gh-client-id']) expect(all).toContain(marker);
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
  });
});
