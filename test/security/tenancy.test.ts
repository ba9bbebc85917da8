/**
 * Tenancy: a key for environment B can neither read, nor change, nor learn the existence of
 * anything in environment A (DESIGN.md, Invariants).
 *
 * The sweep enumerates every route of the app (the OpenAPI document, cross-checked with the
 * router's own table so undocumented routes are swept too), fills path, query, headers and body
 * with A's real identifiers, and calls it with B's key. For each call:
 *  - A's rows (every table with an environment_id, plus A's environment and account) are unchanged;
 *  - a 2xx reveals none of A's values (other than those B itself sent) and reports A's providers as
 *    not installed;
 *  - the response is the same (status, error code, message and details with the identifiers
 *    normalized) as for made-up identifiers, so B cannot tell that A's identifiers exist;
 *  - the same call with A's key (GET routes) succeeds, so the sweep is not vacuous.
 * It runs twice: with B empty, and with B holding integrations under the same keys as A's (with the
 * same functions enabled, and webhook settings of its own).
 *
 * A's data covers every route: integrations and connections of three providers, and on GitHub (a
 * fake GitHub API on loopback) an enabled sync that ran (records, runs, run logs), an action run
 * synchronously and with X-Async, and webhook settings whose deliveries went out to a local
 * endpoint. The queue workers make that data, then stop, so A holds still during the sweep. The
 * sync name, model, action name, run ids and delivery ids are filled with A's real ones; made-up
 * run and delivery ids are random UUIDs.
 *
 * Not every route is authorized by an environment key: GET/DELETE /connect/session take a connect
 * session token, and the hosted Connect pages and OAuth endpoints (hidden from OpenAPI) ignore
 * Authorization and use the session cookie. For those, "B" is a connect session of environment B
 * and the control is a session of A's (see `callerFor`).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type SQL, sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';
import { ADMIN_KEY, createTestApp, type TestApp, type TestEnvironment } from '../helpers/app.js';
import { until } from '../helpers/syncs.js';
import { startWebhookReceiver, type WebhookReceiver } from './fixtures.js';
import { routerRoutes } from '../helpers/routes.js';

// ---------------------------------------------------------------------------------------------
// OpenAPI walking and request filling
// ---------------------------------------------------------------------------------------------

/** The parts of an OpenAPI 3.1 schema (JSON Schema) the sweep reads. */
interface Schema {
  $ref?: string;
  type?: string | string[];
  format?: string;
  properties?: Record<string, Schema>;
  required?: string[];
  items?: Schema;
  minItems?: number;
  minimum?: number;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
  enum?: unknown[];
  const?: unknown;
  default?: unknown;
}
interface Param {
  name: string;
  in: 'path' | 'query' | 'header' | 'cookie';
  required?: boolean;
  schema?: Schema;
}
interface Operation {
  parameters?: Param[];
  requestBody?: { required?: boolean; content?: Record<string, { schema?: Schema }> };
  security?: Record<string, string[]>[];
}
interface OpenApiDoc {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
}

interface Route {
  method: string;
  /** OpenAPI form: `/connection/{connection_id}`. */
  path: string;
  op?: Operation;
  documented: boolean;
}

/** What a request is filled with: one of A's (integration, connection) pairs, or made-up ones. */
interface Fill {
  key: string;
  connectionId: string;
  provider: string;
  credentials: Record<string, unknown>;
  connectionConfig?: Record<string, unknown>;
  accountId: string;
  environmentId: string;
  /** A's functions on this integration: a sync, its model and an action (GitHub only: the others have no built-in functions). */
  syncName?: string;
  model?: string;
  actionName?: string;
  /** A's runs (a sync or action run; an action run) and one of A's webhook deliveries: environment-wide, different per target. */
  runId: string;
  actionRunId: string;
  deliveryId: string;
  /** Set per route by `forRoute`: what `{id}` names, and whether `name` is a function's name. */
  routeId?: string;
  functionRoute?: boolean;
}

/** The identifiers the made-up variant replaces: A's own names and ids (function names are catalog facts, kept). */
type Randomized = 'key' | 'connectionId' | 'runId' | 'actionRunId' | 'deliveryId';
const RUN_AND_DELIVERY_IDS: Randomized[] = ['runId', 'actionRunId', 'deliveryId'];
const madeUpValue = (field: Randomized) =>
  field === 'key'
    ? `nx-key-${randomBytes(5).toString('hex')}`
    : field === 'connectionId'
      ? `nx-conn-${randomBytes(5).toString('hex')}`
      : randomUUID();

const SKIPPED = [/^\/health$/, /^\/ready$/, /^\/docs($|\/|\*)/, /^\/openapi\.json$/];
const isAdmin = (path: string) => path === '/admin' || path.startsWith('/admin/');
const HTTP_METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/**
 * Query or header parameters the generic filler cannot guess: add them here when a new route needs
 * one, so its A-key control call succeeds. (A's function names, models, run and delivery ids are
 * in the Fill: see `identValue`.)
 */
const EXTRA_PARAMS: Record<string, string> = {
  // The proxy's path on the provider: one the fake GitHub answers.
  '*': 'user',
};

/** Proxy routes call the provider: only the target whose API is a local fake (GitHub) is swept, no test reaches the internet. */
const isProxy = (route: Route) => /^(\/v1)?\/proxy\//.test(route.path);

/** Required parameters naming one of A's syncs or models: a target whose integration has none cannot pass A's control call. */
const FUNCTION_PARAMS = new Set(['sync_name', 'model']);
const needsFunction = (route: Route) => (route.op?.parameters ?? []).some((p) => p.required && FUNCTION_PARAMS.has(p.name));

/** What `{id}` and `name` mean on this route: an action run, a webhook delivery; a function or a provider. */
function forRoute(route: Route, f: Fill): Fill {
  const routeId = /^\/(action|v1\/actions)\//.test(route.path)
    ? f.actionRunId
    : route.path.includes('/deliveries/')
      ? f.deliveryId
      : undefined;
  return { ...f, routeId, functionRoute: /\/functions(\/|$)/.test(route.path) };
}

/** The identifier a parameter or body field of this name carries, if any. */
function identValue(name: string, f: Fill): string | undefined {
  const n = name.toLowerCase().replace(/[^a-z]/g, '');
  // `key`: the Connect pages' /connect/i/:key; `allowed_integrations`: the keys a connect session may use.
  if (['providerconfigkey', 'uniquekey', 'integrationid', 'integrationkey', 'integration', 'key', 'allowedintegrations'].includes(n))
    return f.key;
  if (['connectionid', 'connection'].includes(n)) return f.connectionId;
  if (['provider', 'providername'].includes(n)) return f.provider;
  // `/integration/{key}/functions/{name}` and the body of POST …/functions name a function; elsewhere `name` is a provider.
  if (n === 'name') return f.functionRoute ? f.syncName : f.provider;
  if (n === 'accountid') return f.accountId;
  if (n === 'environmentid') return f.environmentId;
  if (['syncname', 'syncs'].includes(n)) return f.syncName;
  if (n === 'actionname') return f.actionName;
  if (n === 'model') return f.model;
  if (n === 'runid') return f.runId;
  if (n === 'id') return f.routeId;
  return undefined;
}

function deref(schema: Schema, doc: OpenApiDoc): Schema {
  let s: Schema | undefined = schema;
  for (let i = 0; i < 10 && s && typeof s.$ref === 'string'; i++) {
    s = doc.components?.schemas?.[s.$ref.replace('#/components/schemas/', '')];
  }
  return s ?? {};
}

const typesOf = (s: Schema): string[] => (Array.isArray(s.type) ? s.type : s.type ? [s.type] : []);
const isRecordSchema = (s: Schema) => typesOf(s).includes('object') && !s.properties;

function acceptsString(schema: Schema, doc: OpenApiDoc): boolean {
  const s = deref(schema, doc);
  const options: Schema[] | undefined = s.anyOf ?? s.oneOf;
  if (options) return options.some((o) => acceptsString(o, doc));
  return typesOf(s).length === 0 || typesOf(s).includes('string');
}

/** Optional body fields worth sending: they point at A's data or would change it. */
const INTERESTING_FIELDS = new Set(['credentials', 'metadata', 'connection_config', 'display_name']);

/** A plausible value for a schema: A's identifiers where a field names one, else a placeholder. */
function fillSchema(schema: Schema, name: string | undefined, f: Fill, doc: OpenApiDoc, depth = 0): unknown {
  const s = deref(schema, doc);
  if (name !== undefined) {
    const ident = identValue(name, f);
    if (ident !== undefined && acceptsString(s, doc)) return ident;
    if (name === 'credentials' && isRecordSchema(s)) return f.credentials;
    if (name === 'connection_config' && isRecordSchema(s)) return f.connectionConfig ?? {};
    if (name === 'metadata' && isRecordSchema(s)) return { sweep: 'overwritten-by-sweep' };
  }
  const options: Schema[] | undefined = s.anyOf ?? s.oneOf;
  if (options?.length) {
    const pick =
      options.map((o) => deref(o, doc)).find((o) => !typesOf(o).includes('array') && !typesOf(o).includes('null')) ?? options[0]!;
    return fillSchema(pick, name, f, doc, depth);
  }
  if (s.allOf?.length) return fillSchema(s.allOf[0]!, name, f, doc, depth);
  if ('const' in s) return s.const;
  if (Array.isArray(s.enum) && s.enum.length) return s.enum[0];
  if ('default' in s) return s.default;
  const type = typesOf(s).find((x) => x !== 'null') ?? 'string';
  switch (type) {
    case 'object': {
      if (!s.properties) return { sweep: 'overwritten-by-sweep' };
      const out: Record<string, unknown> = {};
      const required: string[] = s.required ?? [];
      for (const [key, sub] of Object.entries<Schema>(s.properties)) {
        const wanted = required.includes(key) || identValue(key, f) !== undefined || INTERESTING_FIELDS.has(key);
        if (wanted && depth < 6) {
          const value = fillSchema(sub, key, f, doc, depth + 1);
          if (key === 'credentials' && !required.includes(key) && !isRecordSchema(deref(sub, doc))) continue;
          out[key] = value;
        }
      }
      return out;
    }
    case 'array':
      return s.minItems ? Array.from({ length: s.minItems }, () => fillSchema(s.items ?? {}, name, f, doc, depth + 1)) : [];
    case 'integer':
    case 'number':
      return typeof s.minimum === 'number' ? Math.max(1, s.minimum) : 1;
    case 'boolean':
      return true;
    default:
      if (s.format === 'uri' || s.format === 'url') return 'https://example.com/sweep';
      if (s.format === 'email') return 'sweep@example.com';
      if (s.format === 'date-time') return new Date().toISOString();
      if (s.format === 'uuid') return '00000000-0000-4000-8000-000000000000';
      return name === 'display_name' ? 'Renamed by sweep' : 'sweep';
  }
}

/** Placeholder for a path parameter of unknown meaning (same in every variant). */
const placeholderFor = (param: Param | undefined, doc: OpenApiDoc) => {
  const s = deref(param?.schema ?? {}, doc);
  if (Array.isArray(s.enum) && s.enum.length) return String(s.enum[0]);
  if (typesOf(s).includes('integer') || typesOf(s).includes('number')) return '1';
  if (typesOf(s).includes('boolean')) return 'true';
  if (s.format === 'uuid') return '00000000-0000-4000-8000-000000000000';
  return 'sweep';
};

interface BuiltRequest {
  method: string;
  url: string;
  payload?: unknown;
  headers: Record<string, string>;
}

/** Routes authorized by a connect session token (`Bearer terapi_cs_…`), not an environment key. */
const bySession = (route: Route) => route.op?.security?.some((s) => 'ConnectSessionAuth' in s) ?? false;
/** The hosted Connect pages and OAuth endpoints: browser routes that use the session cookie and ignore Authorization. */
const isPagePath = (path: string) => /^\/connect($|\/i\/)/.test(path) || path.startsWith('/oauth/');
const isPage = (route: Route) => !route.documented && isPagePath(route.path);
/**
 * What the sweep types into a Connect page form: connection config only, so no provider is ever
 * called to verify a credential (the form answers "please fill in …" or starts OAuth).
 */
const PAGE_FORM = { store_domain: 'sweep.example.com', subdomain: 'sweep' };

/**
 * The request for a route. `bare` sends only what is required (lists without filters);
 * otherwise every parameter that names an identifier is filled too.
 */
function buildRequest(route: Route, fill: Fill, doc: OpenApiDoc, bare = false): BuiltRequest {
  const f = forRoute(route, fill);
  const params = route.op?.parameters ?? [];
  const url = route.path.replace(/\{([^}]+)\}/g, (_m, name: string) => {
    const value =
      identValue(name, f) ??
      EXTRA_PARAMS[name] ??
      placeholderFor(
        params.find((p) => p.in === 'path' && p.name === name),
        doc,
      );
    return name === '*' ? value : encodeURIComponent(value);
  });
  const query = new URLSearchParams();
  const headers: Record<string, string> = {};
  for (const p of params) {
    if (p.in !== 'query' && p.in !== 'header') continue;
    let value = identValue(p.name, f) ?? EXTRA_PARAMS[p.name];
    if (p.name === 'refresh_token') value = 'true';
    if (bare && !p.required) continue;
    if (value === undefined && p.required) value = placeholderFor(p, doc);
    if (value === undefined) continue;
    if (p.in === 'query') query.set(p.name, value);
    else headers[p.name.toLowerCase()] = value;
  }
  const qs = query.toString();
  const out: BuiltRequest = { method: route.method, url: qs ? `${url}?${qs}` : url, headers };
  const body = route.op?.requestBody?.content?.['application/json']?.schema;
  if (body) out.payload = fillSchema(body, undefined, f, doc);
  if (isPage(route) && route.method === 'POST') {
    out.payload = new URLSearchParams(PAGE_FORM).toString();
    out.headers['content-type'] = 'application/x-www-form-urlencoded';
  }
  return out;
}

const canonical = (path: string) =>
  path
    .replace(/\{[^}]+\}/g, '{}')
    .replace(/:[^/]+/g, '{}')
    .replace(/\*/g, '{}');

// ---------------------------------------------------------------------------------------------
// Fixture: A's data
// ---------------------------------------------------------------------------------------------

const r = randomBytes(4).toString('hex');
let t: TestApp;
let A: TestEnvironment;
let B: TestEnvironment;
let doc: OpenApiDoc;

interface Target {
  label: string;
  fill: Fill;
}
let targets: Target[] = [];
/** Every distinctive value of A's data (identifiers, metadata, secrets). Provider names are catalog facts, not A's. */
let aValues: string[] = [];
let aKeys: string[] = [];
const aProviders = ['github', 'sendgrid', 'woocommerce'];

const ids = {
  gh: `gh-a-${r}`,
  sg: `sg-a-${r}`,
  woo: `woo-a-${r}`,
  ghConn: `conn-gh-a-${r}`,
  ghConn2: `conn-gh2-a-${r}`,
  sgConn: `conn-sg-a-${r}`,
  wooConn: `conn-woo-a-${r}`,
};
const secrets = {
  ghClientId: `client-id-a-${r}`,
  ghClientSecret: `client-secret-a-${r}`,
  ghAccess: `gho_access_a_${r}`,
  ghRefresh: `ghr_refresh_a_${r}`,
  sgApiKey: `SG.apikey.a.${r}`,
  sgWebhook: `sg-webhook-secret-a-${r}`,
  wooUser: `ck_user_a_${r}`,
  wooPassword: `cs_password_a_${r}`,
};
const values = {
  ghMeta: `meta-owner-a-${r}`,
  ghMetaNested: `meta-plan-a-${r}`,
  ghMetaMerged: `meta-merged-a-${r}`,
  ghTag: `tag-team-a-${r}`,
  endUser: `end-user-a-${r}`,
  endUserEmail: `end-user-a-${r}@example.com`,
  sgDisplay: `SendGrid of A ${r}`,
  sgParam: `region-a-${r}`,
  sgMeta: `meta-sg-a-${r}`,
  wooDomain: `shop-a-${r}.example.com`,
  wooMeta: `meta-woo-a-${r}`,
  sessionUser: `End user of A ${r}`,
  sessionOrg: `org-a-${r}`,
  sessionTag: `tag-session-a-${r}`,
  sessionRedirect: `https://app-a-${r}.example.com/connected`,
  // A's GitHub data (on the fake GitHub): the records, the action outputs and A's webhook endpoint carry these.
  ghLogin: `octo-a-${r}`,
  issueTitle: `Issue of A ${r}`,
  issueBody: `issue-body-a-${r}`,
  createdTitle: `created-by-a-${r}`,
  createdAsyncTitle: `created-async-by-a-${r}`,
  webhookPath: `/hooks/a-${r}`,
};

/** A's functions, runs and deliveries (filled in by `seedFunctionsA`). */
const fnA = {
  syncRun: '',
  actionRun: '',
  asyncActionRun: '',
  syncDelivery: '',
  actionDelivery: '',
  webhookSecret: '',
  webhookSecretHint: '',
  webhookUrl: '',
};
let github: FakeGithub;
let receiver: WebhookReceiver;

/** B's own connection while B shadows A's keys. */
const bOwnConn = `conn-b-${r}`;

// ---------------------------------------------------------------------------------------------
// Connect sessions: who calls the session-token routes and the Connect pages
// ---------------------------------------------------------------------------------------------

interface Session {
  token: string;
  /** `terapi_connect=…`, as the connect link sets it. */
  cookie: string;
}
/** A's connect session (every integration of A, A's end user); B's is made on demand (resetB drops it). */
let aSession: Session;
let bSession: Session | undefined;

/** Creates a connect session with the environment's key and opens its link as a browser would. */
async function newSession(env: TestEnvironment, payload: Record<string, unknown>): Promise<Session> {
  const created = await ok(t.call({ method: 'POST', url: '/connect/sessions', key: env.key, payload }), 201);
  const { token, connect_link: link } = created.json().data as { token: string; connect_link: string };
  const open = await t.call({ method: 'GET', url: new URL(link).pathname + new URL(link).search, key: null });
  expect(open.statusCode, open.body).toBe(303);
  return { token, cookie: String(open.headers['set-cookie']).split(';')[0]! };
}

/** B's session, made on first use; it is then part of B's seeded state (see `restoreB`). */
async function bSessionNow(): Promise<Session> {
  if (!bSession) {
    bSession = await newSession(B, { end_user: { id: `end-user-b-${r}` } });
    if (bSeeded !== undefined) bSeeded = await snapshotOf(B);
  }
  return bSession;
}

/** How one side calls a route: its key (environment routes), its session token, or its session cookie (pages). */
interface Caller {
  key: string | null;
  cookie?: string;
}

async function callerFor(route: Route, who: 'A' | 'B'): Promise<Caller> {
  if (isPage(route)) return { key: null, cookie: (who === 'A' ? aSession : await bSessionNow()).cookie };
  if (bySession(route)) return { key: (who === 'A' ? aSession : await bSessionNow()).token };
  return { key: (who === 'A' ? A : B).key };
}

const send = (req: BuiltRequest, c: Caller) =>
  t.call({ ...req, payload: req.payload as never, key: c.key, headers: { ...req.headers, ...(c.cookie ? { cookie: c.cookie } : {}) } });

async function ok(res: Promise<LightMyRequestResponse>, status = 200) {
  const out = await res;
  expect(out.statusCode, out.body).toBe(status);
  return out;
}

async function seedA() {
  const a = A.key;
  // Webhooks first, so every event of A (the sync's, the async action's) becomes a delivery.
  const hooks = await ok(t.call({ method: 'PUT', url: '/environment/webhooks', key: a, payload: { urls: [receiver.url] } }));
  fnA.webhookSecret = hooks.json().secret;
  fnA.webhookSecretHint = hooks.json().secret_hint;
  fnA.webhookUrl = receiver.url;
  expect(fnA.webhookSecret).toMatch(/^whsec_/);
  await ok(
    t.call({
      method: 'POST',
      url: '/integration',
      key: a,
      payload: {
        provider_config_key: ids.gh,
        provider: 'github',
        oauth_client_id: secrets.ghClientId,
        oauth_client_secret: secrets.ghClientSecret,
        oauth_scopes: 'repo,read:user',
        api_base_url: github.url,
      },
    }),
  );
  await ok(
    t.call({
      method: 'POST',
      url: '/integrations',
      key: a,
      payload: {
        unique_key: ids.sg,
        provider: 'sendgrid',
        display_name: values.sgDisplay,
        params: { region: values.sgParam },
        secrets: { webhook_key: secrets.sgWebhook },
      },
    }),
  );
  await ok(t.call({ method: 'POST', url: '/v1/integrations', key: a, payload: { provider_config_key: ids.woo, provider: 'woocommerce' } }));

  await ok(
    t.call({
      method: 'POST',
      url: '/connection',
      key: a,
      payload: {
        connection_id: ids.ghConn,
        provider_config_key: ids.gh,
        credentials: { access_token: secrets.ghAccess, refresh_token: secrets.ghRefresh, expires_in: 3600 },
        metadata: { owner: values.ghMeta, nested: { plan: values.ghMetaNested } },
        tags: { team: values.ghTag },
        end_user: { id: values.endUser, email: values.endUserEmail },
      },
    }),
  );
  await ok(
    t.call({
      method: 'POST',
      url: '/v1/connections',
      key: a,
      payload: { connection_id: ids.ghConn2, provider_config_key: ids.gh, credentials: { access_token: `${secrets.ghAccess}-2` } },
    }),
  );
  await ok(
    t.call({
      method: 'POST',
      url: '/connections',
      key: a,
      payload: {
        provider_config_key: ids.sg,
        connection_id: ids.sgConn,
        credentials: { type: 'API_KEY', api_key: secrets.sgApiKey },
        metadata: { account: values.sgMeta },
      },
    }),
    201,
  );
  await ok(
    t.call({
      method: 'POST',
      url: '/v1/connections',
      key: a,
      payload: {
        connection_id: ids.wooConn,
        provider_config_key: ids.woo,
        credentials: { username: secrets.wooUser, password: secrets.wooPassword },
        connection_config: { store_domain: values.wooDomain },
        metadata: { store: values.wooMeta },
      },
    }),
  );
  await ok(
    t.call({
      method: 'PATCH',
      url: '/connection/metadata',
      key: a,
      payload: { connection_id: ids.ghConn, provider_config_key: ids.gh, metadata: { merged: values.ghMetaMerged } },
    }),
  );
}

/**
 * A's functions, run by the queue workers: the GitHub `issues` sync of ghConn (ghConn2's stays
 * paused), `create-issue` run synchronously and with X-Async, and every event delivered to A's
 * webhook endpoint. Then the workers stop: A's rows hold still for the sweep.
 */
async function seedFunctionsA() {
  const a = A.key;
  await ok(
    t.call({
      method: 'POST',
      url: `/integration/${ids.gh}/functions`,
      key: a,
      payload: { name: 'issues', frequency: '1d', auto_start: false },
    }),
    201,
  );
  await ok(t.call({ method: 'POST', url: `/v1/integrations/${ids.gh}/functions`, key: a, payload: { name: 'create-issue' } }), 201);
  await ok(
    t.call({
      method: 'POST',
      url: '/sync/start',
      key: a,
      payload: { provider_config_key: ids.gh, syncs: ['issues'], connection_id: ids.ghConn },
    }),
  );
  await until("A's issues sync", async () => {
    const s = (await ok(t.call({ method: 'GET', url: `/sync/${ids.ghConn}/issues?provider_config_key=${ids.gh}`, key: a }))).json();
    if (s.status === 'error') throw new Error(`A's sync failed: ${s.error}`);
    return s.status === 'success';
  });
  fnA.syncRun = (
    await ok(t.call({ method: 'GET', url: `/sync/${ids.ghConn}/issues/runs?provider_config_key=${ids.gh}`, key: a }))
  ).json().runs[0].id;

  const input = (title: string) => ({ owner: values.ghLogin, repo: 'repo-1', title, body: values.issueBody });
  const done = await ok(
    t.call({
      method: 'POST',
      url: '/action/trigger',
      key: a,
      payload: { connection_id: ids.ghConn, provider_config_key: ids.gh, action_name: 'create-issue', input: input(values.createdTitle) },
    }),
  );
  expect(done.json()).toMatchObject({ success: true, output: { title: values.createdTitle } });
  const pending = await ok(
    t.call({
      method: 'POST',
      url: '/v1/actions/trigger',
      key: a,
      headers: { 'connection-id': ids.ghConn, 'provider-config-key': ids.gh, 'x-async': 'true' },
      payload: { action_name: 'create-issue', input: input(values.createdAsyncTitle) },
    }),
    202,
  );
  fnA.asyncActionRun = pending.json().id;
  await until("A's async action", async () => {
    const run = (await ok(t.call({ method: 'GET', url: `/action/${fnA.asyncActionRun}`, key: a }))).json();
    if (run.status === 'error') throw new Error(`A's action failed: ${run.error}`);
    return run.status === 'success';
  });
  // The synchronous action answers with its output only: its run is found in the database.
  const [actionRun] = await rows(sql`SELECT id::text AS id FROM runs WHERE environment_id = ${A.id} AND type = 'action' AND NOT async`);
  fnA.actionRun = String(actionRun?.id);

  // Every event of A dispatched, and every delivery delivered: the sync's and the async action's.
  type Delivery = { id: string; type: string; status: string };
  const deliveries = await until("A's webhook deliveries", async () => {
    const [undispatched] = await rows(sql`SELECT count(*)::int AS n FROM events WHERE environment_id = ${A.id} AND delivered_at IS NULL`);
    const list: Delivery[] = (await ok(t.call({ method: 'GET', url: '/environment/webhooks/deliveries?limit=200', key: a }))).json()
      .deliveries;
    const complete = ['sync', 'async_action'].every((type) => list.some((d) => d.type === type));
    return Number(undispatched?.n) === 0 && complete && list.every((d) => d.status === 'delivered') && list;
  });
  fnA.syncDelivery = deliveries.find((d) => d.type === 'sync')!.id;
  fnA.actionDelivery = deliveries.find((d) => d.type === 'async_action')!.id;
  expect(receiver.received.length).toBeGreaterThanOrEqual(deliveries.length);

  await t.workers!.stop();
}

/**
 * B's side of A's functions, on B's own GitHub integration under A's key (B's connection must exist):
 * the same sync (paused, so no worker would run it) and action, and webhook settings of B's own.
 */
async function seedShadowFunctions() {
  await ok(
    t.call({ method: 'POST', url: `/integration/${ids.gh}/functions`, key: B.key, payload: { name: 'issues', auto_start: false } }),
    201,
  );
  await ok(t.call({ method: 'POST', url: `/integration/${ids.gh}/functions`, key: B.key, payload: { name: 'create-issue' } }), 201);
  await ok(t.call({ method: 'PUT', url: '/environment/webhooks', key: B.key, payload: { urls: [`https://hooks-b-${r}.example.com/in`] } }));
}

/** A's data as A sees it through the API (what must survive the sweep unchanged). */
async function viewOfA() {
  const get = async (url: string, headers?: Record<string, string>) =>
    (await ok(t.call({ method: 'GET', url, key: A.key, headers }))).json();
  const creds: Record<string, unknown> = {};
  for (const [key, conn] of [
    [ids.gh, ids.ghConn],
    [ids.gh, ids.ghConn2],
    [ids.sg, ids.sgConn],
    [ids.woo, ids.wooConn],
  ] as const) {
    const { last_fetched_at: _ignored, ...rest } = await get(`/connections/${conn}?provider_config_key=${key}&refresh_token=true`);
    creds[conn] = rest;
  }
  return {
    integrations: await get('/integration'),
    nangoIntegrations: await get('/integrations'),
    connections: await get('/connection'),
    nangoConnections: await get('/connections'),
    providers: await get('/providers?status=installed'),
    creds,
    functions: await get(`/integration/${ids.gh}/functions`),
    sync: await get(`/sync/${ids.ghConn}/issues?provider_config_key=${ids.gh}`),
    syncStatuses: await get(`/sync/status?provider_config_key=${ids.gh}&syncs=*`),
    syncRuns: await get(`/sync/${ids.ghConn}/issues/runs?provider_config_key=${ids.gh}`),
    runs: await Promise.all([fnA.syncRun, fnA.actionRun, fnA.asyncActionRun].map((id) => get(`/runs/${id}`))),
    runLogs: await Promise.all([fnA.syncRun, fnA.actionRun, fnA.asyncActionRun].map((id) => get(`/runs/${id}/logs`))),
    actions: await Promise.all([fnA.actionRun, fnA.asyncActionRun].map((id) => get(`/action/${id}`))),
    records: await get('/records?model=GithubIssue&limit=1000', { 'connection-id': ids.ghConn, 'provider-config-key': ids.gh }),
    webhooks: await get('/environment/webhooks'),
    deliveries: await get('/environment/webhooks/deliveries?limit=200'),
  };
}

// ---------------------------------------------------------------------------------------------
// Database helpers (read-only for A; B is reset between mutating calls)
// ---------------------------------------------------------------------------------------------

let envTables: string[] = [];

async function rows(query: SQL): Promise<Record<string, unknown>[]> {
  return queryRows<Record<string, unknown>>(t.db.database.db, query);
}

/**
 * Tables without an environment_id, and how A's rows in them are found (through A's connections,
 * runs, or A's own ids). A new table must be added here or carry environment_id (the fixture test checks).
 */
const OTHER_TABLES: Record<string, (a: TestEnvironment) => SQL> = {
  accounts: (a) => sql`x.id = ${a.accountId}`,
  environments: (a) => sql`x.id = ${a.id}`,
  records: (a) => sql`x.connection_pk IN (SELECT id FROM connections WHERE environment_id = ${a.id})`,
  record_counts: (a) => sql`x.connection_pk IN (SELECT id FROM connections WHERE environment_id = ${a.id})`,
  run_logs: (a) => sql`x.run_id IN (SELECT id FROM runs WHERE environment_id = ${a.id})`,
  sync_seen_ids: (a) => sql`x.run_id IN (SELECT id FROM runs WHERE environment_id = ${a.id})`,
  // Pending purges: of a disabled sync's models (by integration) or of deleted connections' records.
  purges: (a) =>
    sql`(x.integration_id IN (SELECT id FROM integrations WHERE environment_id = ${a.id})
         OR x.connection_pks && ARRAY(SELECT id FROM connections WHERE environment_id = ${a.id}))`,
};

/** Every row of an environment, byte for byte (as JSON text), in one query. */
async function snapshotOf(env: TestEnvironment): Promise<string> {
  // `last_fetched_at` is written behind the reads that stamp it: write what is pending first, so a
  // stamp of an earlier call does not land between two snapshots.
  await t.services.connections.flushFetchStamps();
  const tables: [string, SQL][] = [
    ...envTables.map((table): [string, SQL] => [table, sql`x.environment_id = ${env.id}`]),
    ...Object.entries(OTHER_TABLES).map(([table, where]): [string, SQL] => [table, where(env)]),
  ];
  const columns = tables.map(
    ([table, where], i) =>
      sql`(SELECT coalesce(string_agg(to_jsonb(x)::text, E'\n' ORDER BY to_jsonb(x)::text), '') FROM ${sql.identifier(table)} x WHERE ${where}) AS ${sql.identifier(`c${i}`)}`,
  );
  const [row] = await rows(sql`SELECT ${sql.join(columns, sql`, `)}`);
  return tables.map(([table], i) => `${table}: ${String(row?.[`c${i}`])}`).join('\n');
}

const snapshotA = () => snapshotOf(A);
/** B's rows right after its last reset and seed. */
let bSeeded: string | undefined;

/** Deletes everything B owns (children first, whatever tables exist), then re-seeds B's phase state. */
async function resetB(seed: () => Promise<void>) {
  for (let pass = 0; pass < 5; pass++) {
    let failed = false;
    for (const table of envTables) {
      try {
        await t.db.database.db.execute(sql`DELETE FROM ${sql.identifier(table)} WHERE environment_id = ${B.id}`);
      } catch {
        failed = true; // a child table still references it: the next pass retries
      }
    }
    if (!failed) break;
  }
  bSession = undefined; // its row is gone
  await seed();
  bSeeded = await snapshotOf(B);
}

/** After a write by B: B's state is the seeded one again (reset and re-seeded only if the write changed a row of B's). */
async function restoreB(seed: () => Promise<void>) {
  if (bSeeded === undefined || (await snapshotOf(B)) !== bSeeded) await resetB(seed);
}

// ---------------------------------------------------------------------------------------------
// Response comparison
// ---------------------------------------------------------------------------------------------

function normalize(text: string, subs: [string, string][]): string {
  let out = text;
  for (const [value, placeholder] of [...subs].sort((x, y) => y[0].length - x[0].length)) {
    if (value) out = out.split(value).join(placeholder);
    const encoded = encodeURIComponent(value);
    if (encoded !== value) out = out.split(encoded).join(placeholder);
  }
  return out;
}

function parse(res: LightMyRequestResponse): unknown {
  try {
    return res.json();
  } catch {
    return res.body;
  }
}

/** The random parts of a Connect page or an OAuth redirect (a CSP nonce per page, a state per flow). */
const stripRandom = (text: string) =>
  text
    .replace(/nonce="[^"]*"/g, 'nonce="<nonce>"')
    .replace(/'nonce-[^']*'/g, "'nonce-<nonce>'")
    .replace(/([?&](?:state|code_challenge)=)[^&"]*/g, '$1<random>');

/** What B may observe of a response: status, redirect target and error, or for a read the whole body. */
function observable(method: string, res: LightMyRequestResponse): unknown {
  const parsed = parse(res);
  const body = typeof parsed === 'string' ? stripRandom(parsed) : parsed;
  const location = res.headers.location === undefined ? {} : { location: stripRandom(String(res.headers.location)) };
  if (res.statusCode >= 400 || method === 'GET') return { status: res.statusCode, ...location, body };
  return { status: res.statusCode, ...location };
}

/** Objects `{ name, installed }` in a response (provider listings). */
function installedFlags(body: unknown, out: { name: string; installed: boolean }[] = []) {
  if (Array.isArray(body)) for (const x of body) installedFlags(x, out);
  else if (body && typeof body === 'object') {
    const o = body as Record<string, unknown>;
    if (typeof o.name === 'string' && typeof o.installed === 'boolean') out.push({ name: o.name, installed: o.installed });
    for (const v of Object.values(o)) installedFlags(v, out);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The sweep
// ---------------------------------------------------------------------------------------------

interface Phase {
  name: string;
  /** B's own state during the phase (restored after every mutating call: see `restoreB`). */
  seedB: () => Promise<void>;
  /** Providers B has installed in this phase. */
  bProviders: string[];
  /** Which identifiers the made-up variant replaces (those B does not hold itself). */
  randomize: Randomized[];
  /** A's values that B may legitimately see in this phase (its own integrations under the same keys). */
  shared: string[];
}

interface SweepStats {
  documented: Set<string>;
  undocumented: Set<string>;
  controlOk: Set<string>;
  /** Reads where A's key saw something B's key did not (status or body). */
  distinguished: Set<string>;
  calls: number;
}

async function sweep(routes: Route[], phase: Phase, problems: string[], stats: SweepStats) {
  await resetB(phase.seedB);
  const seen = new Set<string>();
  const bogusKey = `terapi_sk_${randomBytes(32).toString('base64url')}`;
  const bogusSession = `terapi_cs_${randomBytes(32).toString('base64url')}`;

  for (const route of routes) {
    const routeId = `${route.method} ${route.path}`;
    (route.documented ? stats.documented : stats.undocumented).add(routeId);
    const variants: { target: Target; bare: boolean }[] = targets
      .filter((target) => !isProxy(route) || target.label === 'github')
      .flatMap((target) => [{ target, bare: false }, ...(route.method === 'GET' ? [{ target, bare: true }] : [])]);

    for (const { target, bare } of variants) {
      const real = buildRequest(route, target.fill, doc, bare);
      const signature = JSON.stringify(real);
      if (seen.has(signature)) continue;
      seen.add(signature);
      const where = `[${phase.name}] ${real.method} ${real.url}${real.payload !== undefined ? ` ${JSON.stringify(real.payload)}` : ''}`;

      // 1. B's key (or B's connect session) on A's identifiers: A's rows unchanged.
      const bCaller = await callerFor(route, 'B');
      const before = await snapshotA();
      const bRes = await send(real, bCaller);
      stats.calls++;
      const after = await snapshotA();
      if (after !== before) problems.push(`${where}: B's call changed A's rows (status ${bRes.statusCode})`);
      if (bRes.statusCode >= 500) problems.push(`${where}: B got ${bRes.statusCode} ${bRes.body}`);

      // 2. Nothing of A in what B sees, beyond what B itself sent.
      const sent = `${real.url} ${JSON.stringify(real.payload ?? null)} ${JSON.stringify(real.headers)}`;
      const shown = `${bRes.body}\n${JSON.stringify(bRes.headers)}`;
      const leaked = aValues.filter((v) => !phase.shared.includes(v) && !sent.includes(v) && shown.includes(v));
      if (leaked.length)
        problems.push(`${where}: B's response (${bRes.statusCode}) contains A's ${leaked.join(', ')}: ${bRes.body.slice(0, 500)}`);
      for (const flag of installedFlags(parse(bRes))) {
        if (aProviders.includes(flag.name) && flag.installed !== phase.bProviders.includes(flag.name)) {
          problems.push(`${where}: B sees provider ${flag.name} as installed=${flag.installed}`);
        }
      }
      if (bRes.statusCode < 400 && route.method !== 'GET' && phase.name === 'B empty' && !route.documented) {
        problems.push(`${where}: undocumented route accepted B's write (${bRes.statusCode})`);
      }
      if (route.method !== 'GET') await restoreB(phase.seedB);

      // 3. Same answer as for identifiers that exist nowhere.
      const madeUp: Fill = { ...target.fill };
      const subs: [string, string][] = [];
      const realSubs: [string, string][] = [];
      for (const field of phase.randomize) {
        madeUp[field] = madeUpValue(field);
        subs.push([madeUp[field], `<${field}>`]);
        realSubs.push([target.fill[field], `<${field}>`]);
      }
      const fake = buildRequest(route, madeUp, doc, bare);
      const fRes = await send(fake, await callerFor(route, 'B'));
      if (route.method !== 'GET') await restoreB(phase.seedB);
      const realView = normalize(JSON.stringify(observable(route.method, bRes)), realSubs);
      const fakeView = normalize(JSON.stringify(observable(route.method, fRes)), subs);
      if (realView !== fakeView) problems.push(`${where}: B can tell A's identifiers exist:\n  real: ${realView}\n  made-up: ${fakeView}`);

      // 4. No key, or a well-formed key of no environment: 401 on every environment route. Session
      //    routes take neither environment's key; the pages ignore keys and want a live session cookie.
      const unauthorized: [string, Caller][] = isPage(route)
        ? [
            ["A's key and no cookie", { key: A.key }],
            ["B's key and no cookie", { key: B.key }],
            ['a cookie of no session', { key: null, cookie: `terapi_connect=${bogusSession}` }],
          ]
        : bySession(route)
          ? [
              ['no token', { key: null }],
              ['a session token of no session', { key: bogusSession }],
              ['an unknown key', { key: bogusKey }],
              ["A's environment key", { key: A.key }],
              ["B's environment key", { key: B.key }],
            ]
          : route.documented
            ? [
                ['no key', { key: null }],
                ['an unknown key', { key: bogusKey }],
              ]
            : [];
      for (const [label, caller] of unauthorized) {
        const unauth = await send(real, caller);
        if (unauth.statusCode !== 401) problems.push(`${where}: ${label} got ${unauth.statusCode}, not 401`);
      }
      if (unauthorized.length && (await snapshotA()) !== after) problems.push(`${where}: an unauthenticated call changed A's rows`);

      // 5. Control: A's key (or A's session) on the same read succeeds (so the sweep exercised real data).
      //    A page may answer a redirect (to the provider's consent screen), or an error page for one
      //    integration and not another; each page must succeed for A at least once (checked after the sweep).
      if (route.method === 'GET' && (route.documented || isPage(route))) {
        const aRes = await send(real, await callerFor(route, 'A'));
        if (aRes.statusCode >= 200 && aRes.statusCode < (isPage(route) ? 400 : 300)) {
          stats.controlOk.add(routeId);
          if (JSON.stringify(observable('GET', aRes)) !== JSON.stringify(observable('GET', bRes))) stats.distinguished.add(routeId);
        } else if (!isPage(route) && !(needsFunction(route) && !target.fill.syncName && aRes.statusCode === 400)) {
          // (A target without functions gets A's 400 "… is not a sync of sendgrid"; the GitHub target passes.)
          problems.push(`${where}: A's own control call got ${aRes.statusCode} ${aRes.body.slice(0, 300)} (extend EXTRA_PARAMS?)`);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  // A's GitHub integration talks to a fake GitHub that knows ghConn's access token; A's webhooks go to a local endpoint.
  github = await startFakeGithub({ token: secrets.ghAccess, login: values.ghLogin });
  github.controls.seed({ repos: 2, issuesPerRepo: 3 });
  github.controls.addIssue(`${values.ghLogin}/repo-2`, { title: values.issueTitle, body: values.issueBody });
  receiver = await startWebhookReceiver(values.webhookPath);
  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true } });
  A = t.env;
  B = await t.newEnvironment('prod');
  await seedA();
  await seedFunctionsA();
  // A's connect session: every integration of A, for A's end user.
  aSession = await newSession(A, {
    end_user: { id: values.endUser, email: values.endUserEmail, display_name: values.sessionUser },
    organization: { id: values.sessionOrg },
    tags: { team: values.sessionTag },
    redirect_url: values.sessionRedirect,
  });
  doc = (await t.call({ method: 'GET', url: '/openapi.json', key: null })).json();
  envTables = (
    await rows(
      sql`SELECT c.table_name AS name FROM information_schema.columns c JOIN information_schema.tables tb
            ON tb.table_schema = c.table_schema AND tb.table_name = c.table_name
          WHERE c.table_schema = 'public' AND c.column_name = 'environment_id' AND tb.table_type = 'BASE TABLE'
          ORDER BY c.table_name DESC`,
    )
  ).map((x) => String(x.name));

  const common = { accountId: A.accountId, environmentId: A.id };
  // Each target names other runs and deliveries of A (a sync run and the synchronous action's; the
  // synchronous action's run and the async one's), so every kind is swept.
  const syncRuns = { runId: fnA.syncRun, actionRunId: fnA.actionRun, deliveryId: fnA.syncDelivery };
  targets = [
    {
      label: 'github',
      fill: {
        key: ids.gh,
        connectionId: ids.ghConn,
        provider: 'github',
        credentials: { access_token: `sweep-token-${r}` },
        syncName: 'issues',
        model: 'GithubIssue',
        actionName: 'create-issue',
        ...syncRuns,
        ...common,
      },
    },
    {
      label: 'sendgrid',
      fill: {
        key: ids.sg,
        connectionId: ids.sgConn,
        provider: 'sendgrid',
        credentials: { api_key: `sweep-key-${r}` },
        runId: fnA.actionRun,
        actionRunId: fnA.asyncActionRun,
        deliveryId: fnA.actionDelivery,
        ...common,
      },
    },
    {
      label: 'woocommerce',
      fill: {
        key: ids.woo,
        connectionId: ids.wooConn,
        provider: 'woocommerce',
        credentials: { username: 'sweep', password: `sweep-pw-${r}` },
        connectionConfig: { store_domain: 'sweep.example.com' },
        ...syncRuns,
        ...common,
      },
    },
  ];
  aKeys = [ids.gh, ids.sg, ids.woo];
  aValues = [
    ...Object.values(ids),
    ...Object.values(secrets),
    `${secrets.ghAccess}-2`,
    ...Object.values(values),
    aSession.token,
    ...Object.values(fnA),
  ];
});
afterAll(async () => {
  await t?.close();
  await github?.close();
  await receiver?.close();
});

/**
 * The routes of one kind (environment routes: everything but health, docs and admin; or the admin
 * routes): every operation of the OpenAPI document, plus any route of the router's own table that
 * the document does not list.
 */
function appRoutes(kind: 'environment' | 'admin'): { routes: Route[]; inRouter: number } {
  const wanted = (path: string) => !SKIPPED.some((re) => re.test(path)) && (kind === 'admin') === isAdmin(path);
  const routes: Route[] = [];
  for (const [path, ops] of Object.entries(doc.paths)) {
    if (!wanted(path)) continue;
    for (const [method, op] of Object.entries(ops)) {
      if (HTTP_METHODS.includes(method)) routes.push({ method: method.toUpperCase(), path, op, documented: true });
    }
  }
  const known = new Set(routes.map((x) => `${x.method} ${canonical(x.path)}`));
  let inRouter = 0;
  for (const x of routerRoutes(t.app)) {
    if (x.method === 'HEAD' || x.method === 'OPTIONS' || !wanted(x.path)) continue;
    inRouter++;
    if (known.has(`${x.method} ${canonical(x.path)}`)) continue;
    known.add(`${x.method} ${canonical(x.path)}`);
    routes.push({ method: x.method, path: x.path.replace(/:([^/]+)/g, '{$1}').replace(/\*/g, '{*}'), documented: false });
  }
  return { routes, inRouter };
}

/** B against A's records, runs, action results and deliveries (see the test that calls it, which resets B after). */
async function recordsRunsDeliveriesAgainstB() {
  const before = await snapshotA();
  /** A's values in a response, other than those in what was sent. */
  const leaks = (res: LightMyRequestResponse, sent: string) =>
    aValues.filter((v) => !sent.includes(v) && `${res.body}\n${JSON.stringify(res.headers)}`.includes(v));
  const nx = () => `nx-conn-${randomBytes(5).toString('hex')}`;

  // Control: A's records and deliveries, with cursors to their next pages.
  const aHeaders = { 'connection-id': ids.ghConn, 'provider-config-key': ids.gh };
  const aRecords = (await ok(t.call({ method: 'GET', url: '/records?model=GithubIssue&limit=2', key: A.key, headers: aHeaders }))).json();
  expect(aRecords.records).toHaveLength(2);
  expect(aRecords.next_cursor).toEqual(expect.any(String));
  const aDeliveries = (await ok(t.call({ method: 'GET', url: '/environment/webhooks/deliveries?limit=1', key: A.key }))).json();
  expect(aDeliveries.next_cursor).toEqual(expect.any(String));

  // A's connection in B's headers: 404 exactly as a connection of nobody's, whatever the query.
  for (const query of [
    'model=GithubIssue',
    'model=GithubIssue&limit=10000',
    `model=GithubIssue&cursor=${aRecords.next_cursor}`,
    'model=GithubIssue&filter=added,updated,deleted&modified_after=2000-01-01T00:00:00Z',
    `model=GithubIssue&ids=${aRecords.records[0].id}`,
  ]) {
    const url = `/records?${query}`;
    const real = await t.call({ method: 'GET', url, key: B.key, headers: aHeaders });
    const other = nx();
    const made = await t.call({ method: 'GET', url, key: B.key, headers: { ...aHeaders, 'connection-id': other } });
    expect(real.statusCode, url).toBe(404);
    expect(normalize(real.body, [[ids.ghConn, '<conn>']]), url).toBe(normalize(made.body, [[other, '<conn>']]));
    expect(leaks(real, `${url} ${JSON.stringify(aHeaders)}`), url).toEqual([]);
  }
  // B's own connection with A's cursor: refused as another feed's, never served A's records; B's feed is its own (empty).
  const bHeaders = { 'connection-id': bOwnConn, 'provider-config-key': ids.gh };
  const foreign = await t.call({
    method: 'GET',
    url: `/records?model=GithubIssue&cursor=${aRecords.next_cursor}`,
    key: B.key,
    headers: bHeaders,
  });
  expect(foreign.statusCode, foreign.body).toBe(400);
  expect(foreign.json().details[0].field).toBe('cursor');
  expect(leaks(foreign, '')).toEqual([]);
  expect(
    (await ok(t.call({ method: 'GET', url: '/records?model=GithubIssue&limit=10000', key: B.key, headers: bHeaders }))).json(),
  ).toEqual({ records: [], next_cursor: null });

  // Deliveries and webhook settings: B's own only; A's delivery cursor is refused, as a forged one.
  const foreignDeliveries = await t.call({
    method: 'GET',
    url: `/environment/webhooks/deliveries?cursor=${aDeliveries.next_cursor}`,
    key: B.key,
  });
  expect(foreignDeliveries.statusCode).toBe(400);
  expect(foreignDeliveries.json().details[0].field).toBe('cursor');
  for (const url of ['/environment/webhooks/deliveries?status=delivered&limit=200']) {
    const res = await ok(t.call({ method: 'GET', url, key: B.key }));
    expect(res.json().deliveries, url).toEqual([]);
    expect(leaks(res, ''), url).toEqual([]);
  }
  const bHooks = await ok(t.call({ method: 'GET', url: '/environment/webhooks', key: B.key }));
  expect(bHooks.json()).toMatchObject({ urls: [`https://hooks-b-${r}.example.com/in`] });
  expect(bHooks.json().secret).toBeUndefined();
  expect(leaks(bHooks, '')).toEqual([]);

  // A's run, action-run and delivery ids: 404 for B, exactly as random UUIDs; A's key reads the runs (control).
  const byId: ['GET' | 'POST', (id: string) => string, string[], boolean][] = [
    ['GET', (id) => `/runs/${id}`, [fnA.syncRun, fnA.actionRun, fnA.asyncActionRun], true],
    ['GET', (id) => `/runs/${id}/logs?limit=1000`, [fnA.syncRun, fnA.actionRun, fnA.asyncActionRun], true],
    ['GET', (id) => `/action/${id}`, [fnA.actionRun, fnA.asyncActionRun], true],
    // A sync run is not an action run: 404 for A too, and for B the same as any other id.
    ['GET', (id) => `/action/${id}`, [fnA.syncRun], false],
    ['POST', (id) => `/environment/webhooks/deliveries/${id}/retry`, [fnA.syncDelivery, fnA.actionDelivery], false],
  ];
  for (const [method, urlOf, aIds, control] of byId) {
    for (const id of aIds) {
      const other = randomUUID();
      const real = await t.call({ method, url: urlOf(id), key: B.key });
      const made = await t.call({ method, url: urlOf(other), key: B.key });
      expect(real.statusCode, `${method} ${urlOf(id)}`).toBe(404);
      expect(normalize(real.body, [[id, '<id>']]), urlOf(id)).toBe(normalize(made.body, [[other, '<id>']]));
      expect(leaks(real, urlOf(id)), urlOf(id)).toEqual([]);
      if (control) expect((await t.call({ method, url: urlOf(id), key: A.key })).statusCode, `A: ${urlOf(id)}`).toBe(200);
    }
  }

  // B's sync and action controls aimed at A's connection: 404, nothing queued or run.
  for (const [url, payload] of [
    ['/sync/trigger', { connection_id: ids.ghConn, provider_config_key: ids.gh, syncs: ['issues'], reset: true }],
    ['/sync/start', { connection_id: ids.ghConn, provider_config_key: ids.gh, syncs: ['issues'] }],
    ['/sync/pause', { connection_id: ids.ghConn, provider_config_key: ids.gh, syncs: ['issues'] }],
    [
      '/action/trigger',
      { connection_id: ids.ghConn, provider_config_key: ids.gh, action_name: 'create-issue', input: { owner: 'b', repo: 'b', title: 'b' } },
    ],
  ] as const) {
    const res = await t.call({ method: 'POST', url, key: B.key, payload });
    expect(res.statusCode, `${url}: ${res.body}`).toBe(404);
    expect(leaks(res, JSON.stringify(payload)), url).toEqual([]);
  }
  // Start and pause over B's whole integration (no connection named) reach B's own syncs only.
  expect(
    (
      await ok(t.call({ method: 'POST', url: '/sync/pause', key: B.key, payload: { provider_config_key: ids.gh, syncs: ['issues'] } }))
    ).json().count,
  ).toBe(1);

  expect(await snapshotA()).toBe(before);
}

describe('tenancy: environment B against environment A', () => {
  it('the fixture is what the sweep assumes', async () => {
    const view = await viewOfA();
    expect(
      view.integrations.integrations.map((i: { unique_key: string; connection_count: number }) => [i.unique_key, i.connection_count]),
    ).toEqual([
      [ids.gh, 2],
      [ids.sg, 1],
      [ids.woo, 1],
    ]);
    expect(view.connections.connections).toHaveLength(4);
    expect(view.creds[ids.ghConn]).toMatchObject({
      metadata: { owner: values.ghMeta, nested: { plan: values.ghMetaNested }, merged: values.ghMetaMerged },
      credentials: { access_token: secrets.ghAccess, refresh_token: secrets.ghRefresh },
    });
    // A's functions ran: records of A's issues, a successful sync run with its log, both actions, delivered webhooks.
    expect(
      view.functions.functions
        .filter((f: { enabled: boolean }) => f.enabled)
        .map((f: { name: string }) => f.name)
        .sort(),
    ).toEqual(['create-issue', 'issues']);
    expect(view.sync).toMatchObject({ status: 'success', records_count: 7 });
    expect(view.records.records.map((x: { title: string }) => x.title)).toContain(values.issueTitle);
    expect(view.records.records.every((x: { repository: string }) => x.repository.startsWith(`${values.ghLogin}/`))).toBe(true);
    expect(view.runs.map((x: { type: string; status: string }) => [x.type, x.status])).toEqual([
      ['sync', 'success'],
      ['action', 'success'],
      ['action', 'success'],
    ]);
    for (const log of view.runLogs) expect(log.logs.length).toBeGreaterThan(0);
    expect(view.actions.map((x: { output: { title: string } }) => x.output.title)).toEqual([values.createdTitle, values.createdAsyncTitle]);
    expect(view.webhooks).toEqual({ urls: [fnA.webhookUrl], secret_hint: fnA.webhookSecretHint, previous_secret_expires_at: null });
    expect(view.deliveries.deliveries.map((x: { type: string; status: string }) => `${x.type} ${x.status}`).sort()).toEqual([
      'async_action delivered',
      // The imports of A's connections (auth creation events).
      ...Array.from(
        { length: view.deliveries.deliveries.filter((x: { type: string }) => x.type === 'auth').length },
        () => 'auth delivered',
      ),
      'sync delivered',
    ]);
    expect(view.deliveries.deliveries.filter((x: { type: string }) => x.type === 'auth').length).toBeGreaterThan(0);
    expect(receiver.received.every((x) => x.path === values.webhookPath)).toBe(true);
    // The syncs of ghConn2 exist (paused): statuses list both connections.
    expect(view.syncStatuses.syncs.map((x: { connection_id: string; status: string }) => [x.connection_id, x.status]).sort()).toEqual([
      [ids.ghConn, 'SUCCESS'],
      [ids.ghConn2, 'PAUSED'],
    ]);

    // Every table holding A's rows is in the snapshot: by environment_id, or listed in OTHER_TABLES.
    const tables = (
      await rows(sql`SELECT table_name AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'`)
    ).map((x) => String(x.name));
    expect(tables.filter((x) => !envTables.includes(x)).sort()).toEqual(Object.keys(OTHER_TABLES).sort());
    for (const table of ['function_configs', 'syncs', 'runs', 'events', 'webhook_settings', 'webhook_deliveries'])
      expect(envTables).toContain(table);
    const snapshot = await snapshotA();
    for (const value of [values.issueTitle, fnA.syncRun, fnA.syncDelivery, 'github issue created', values.createdAsyncTitle])
      expect(snapshot).toContain(value);

    // B starts empty.
    expect((await ok(t.call({ method: 'GET', url: '/connection', key: B.key }))).json().connections).toEqual([]);
    expect((await ok(t.call({ method: 'GET', url: '/integration', key: B.key }))).json().integrations).toEqual([]);
  });

  it("every route, called with B's key on A's identifiers, neither reveals nor changes A's data", { timeout: 300_000 }, async () => {
    const before = await viewOfA();
    const { routes, inRouter } = appRoutes('environment');
    // The router table was read (so an undocumented route could not slip past the sweep).
    expect(inRouter).toBeGreaterThanOrEqual(routes.filter((x) => x.documented).length);
    const problems: string[] = [];
    const stats: SweepStats = {
      documented: new Set(),
      undocumented: new Set(),
      controlOk: new Set(),
      distinguished: new Set(),
      calls: 0,
    };

    // Phase 1: B holds nothing.
    await sweep(
      routes,
      { name: 'B empty', seedB: async () => {}, bProviders: [], randomize: ['key', 'connectionId', ...RUN_AND_DELIVERY_IDS], shared: [] },
      problems,
      stats,
    );

    // Phase 2: B has its own integrations under A's keys (keys are per environment), a connection,
    // the same functions enabled (its sync paused: B's workers would have nothing to call) and webhook settings.
    const seedShadow = async () => {
      for (const [key, provider] of [
        [ids.gh, 'github'],
        [ids.sg, 'sendgrid'],
        [ids.woo, 'woocommerce'],
      ] as const) {
        await ok(t.call({ method: 'POST', url: '/integration', key: B.key, payload: { provider_config_key: key, provider } }));
      }
      await ok(
        t.call({
          method: 'POST',
          url: '/connection',
          key: B.key,
          payload: {
            connection_id: bOwnConn,
            provider_config_key: ids.gh,
            credentials: { access_token: `b-token-${r}` },
            metadata: { b: 'own' },
          },
        }),
      );
      await seedShadowFunctions();
    };
    await sweep(
      routes,
      {
        name: "B shadows A's keys",
        seedB: seedShadow,
        bProviders: aProviders,
        randomize: ['connectionId', ...RUN_AND_DELIVERY_IDS],
        shared: aKeys,
      },
      problems,
      stats,
    );
    await resetB(async () => {});

    expect(problems).toEqual([]);

    // The sweep must have covered the API, and A's key must see A's data on the same reads.
    expect(stats.documented.size).toBeGreaterThanOrEqual(25);
    const documentedGets = [...stats.documented].filter((x) => x.startsWith('GET '));
    expect(documentedGets.length).toBeGreaterThanOrEqual(8);
    // Every Connect page but the OAuth callback (no session, no identifier: its `state` is the credential).
    const pageGets = [...stats.undocumented].filter((x) => x.startsWith('GET ') && isPagePath(x.slice(4)) && x !== 'GET /oauth/callback');
    expect(pageGets.sort()).toEqual(['GET /connect', 'GET /connect/i/{key}', 'GET /oauth/connect/{key}']);
    for (const needed of ['POST /connect/i/{key}', 'GET /oauth/callback']) expect(stats.undocumented, needed).toContain(needed);
    expect([...stats.controlOk].sort()).toEqual([...documentedGets, ...pageGets].sort());
    expect([...stats.distinguished].sort()).toEqual([...documentedGets, ...pageGets].sort());
    for (const needed of [
      'GET /connection',
      'GET /connection/{connection_id}',
      'GET /connections/{connection_id}',
      'GET /integration/{provider_config_key}',
      'GET /integrations',
      'GET /providers',
      'DELETE /integration/{provider_config_key}',
      'DELETE /connections/{connection_id}',
      'PATCH /connection/metadata',
      'POST /connection',
      'PATCH /integrations/{provider_config_key}',
      'GET /auth/token/{provider_config_key}/{connection_id}',
      'GET /v1/auth/token/{provider_config_key}/{connection_id}',
      'POST /connect/sessions',
      'POST /connect/sessions/reconnect',
      'GET /connect/session',
      'DELETE /connect/session',
      'GET /integration/{provider_config_key}/functions',
      'POST /integration/{provider_config_key}/functions',
      'DELETE /v1/integrations/{provider_config_key}/functions/{name}',
      'POST /sync/trigger',
      'GET /sync/{connection_id}/{sync_name}',
      'GET /v1/sync/{connection_id}/{sync_name}/runs',
      'GET /sync/status',
      'POST /sync/start',
      'POST /sync/pause',
      'PUT /sync/update-connection-frequency',
      'POST /action/trigger',
      'POST /v1/actions/trigger',
      'GET /action/{id}',
      'GET /runs/{run_id}',
      'GET /runs/{run_id}/logs',
      'GET /records',
      'GET /environment/webhooks',
      'PUT /environment/webhooks',
      'POST /environment/webhooks/rotate-secret',
      'GET /environment/webhooks/deliveries',
      'POST /environment/webhooks/deliveries/{id}/retry',
    ]) {
      expect(stats.documented, needed).toContain(needed);
    }
    expect(stats.calls).toBeGreaterThan(60);

    // A is exactly as before, seen through the API.
    expect(await viewOfA()).toEqual(before);
  });

  it("list filters and A's own page cursors never reach A's rows from B", async () => {
    const aPage = (await ok(t.call({ method: 'GET', url: '/connection?limit=1', key: A.key }))).json();
    const aNango = (await ok(t.call({ method: 'GET', url: '/connections?limit=1', key: A.key }))).json();
    expect(aPage.next_cursor).toEqual(expect.any(String));
    expect(aNango.next_cursor).toEqual(expect.any(String));
    const search = ids.ghConn.slice(2, -2);
    for (const url of [
      `/connection?cursor=${aPage.next_cursor}`,
      `/v1/connections?limit=1&cursor=${aPage.next_cursor}`,
      `/connections?cursor=${aNango.next_cursor}`,
      `/connection?end_user_id=${values.endUser}`,
      `/v1/connections?end_user_id=${values.endUser}`,
      `/connections?endUserId=${values.endUser}`,
      `/connection?search=${search}`,
      `/connections?search=${search}`,
      `/connection?provider_config_key=${ids.gh}&search=${search}&end_user_id=${values.endUser}`,
    ]) {
      const b = await t.call({ method: 'GET', url, key: B.key });
      if (url.includes('cursor=')) {
        // A cursor is bound to the environment that got it: refused, as any forged cursor.
        expect(b.statusCode, url).toBe(400);
        expect(b.json().details[0].field, url).toBe('cursor');
        expect(b.body).not.toContain(ids.ghConn);
      } else {
        expect(b.statusCode, url).toBe(200);
        expect(b.json().connections, url).toEqual([]);
      }
      // The same query with A's key does find A's rows (so the filters were valid).
      expect((await ok(t.call({ method: 'GET', url, key: A.key }))).json().connections.length, url).toBeGreaterThan(0);
    }
  });

  it("B reaches none of A's records, runs, action results or deliveries: A's ids answer as random ones, A's cursors page only B's own", async () => {
    // B shadows A: its own GitHub integration under A's key, a connection, the same functions, its own webhook settings.
    await resetB(async () => {
      await ok(t.call({ method: 'POST', url: '/integration', key: B.key, payload: { provider_config_key: ids.gh, provider: 'github' } }));
      await ok(
        t.call({
          method: 'POST',
          url: '/connection',
          key: B.key,
          payload: { connection_id: bOwnConn, provider_config_key: ids.gh, credentials: { access_token: `b-token-${r}` } },
        }),
      );
      await seedShadowFunctions();
    });
    try {
      await recordsRunsDeliveriesAgainstB();
    } finally {
      await resetB(async () => {});
    }
  });

  it("GET /providers shows A's providers as not installed for B", async () => {
    const list = (await ok(t.call({ method: 'GET', url: '/providers', key: B.key }))).json();
    for (const name of aProviders) expect(list.data.find((p: { name: string }) => p.name === name)).toMatchObject({ installed: false });
    expect((await ok(t.call({ method: 'GET', url: '/providers?status=installed', key: B.key }))).json().data).toEqual([]);
    for (const name of aProviders) {
      expect((await ok(t.call({ method: 'GET', url: `/providers/${name}`, key: B.key }))).json().data.installed).toBe(false);
      expect((await ok(t.call({ method: 'GET', url: `/providers/${name}`, key: A.key }))).json().data.installed).toBe(true);
    }
    const installedForA = (await ok(t.call({ method: 'GET', url: '/providers?status=installed', key: A.key }))).json().data;
    expect(installedForA.map((p: { name: string }) => p.name).sort()).toEqual([...aProviders].sort());
  });

  it("B can create an integration and a connection under A's identifiers; they are B's own and A is untouched", async () => {
    const before = await viewOfA();
    const created = await ok(
      t.call({
        method: 'POST',
        url: '/integration',
        key: B.key,
        payload: { provider_config_key: ids.gh, provider: 'github', oauth_client_id: 'b-client' },
      }),
    );
    expect(created.json()).toMatchObject({ unique_key: ids.gh, connection_count: 0 });
    const nango = await ok(
      t.call({ method: 'POST', url: '/integrations', key: B.key, payload: { unique_key: ids.sg, provider: 'sendgrid' } }),
    );
    expect(nango.json().data).toMatchObject({ unique_key: ids.sg, connection_count: 0, params: {}, secret_names: [] });

    // B's copy of the key sees none of A's connections.
    expect((await t.call({ method: 'GET', url: `/integration/${ids.gh}`, key: B.key })).json().connection_count).toBe(0);
    expect((await t.call({ method: 'GET', url: `/connection?provider_config_key=${ids.gh}`, key: B.key })).json().connections).toEqual([]);
    const miss = await t.call({ method: 'GET', url: `/connections/${ids.ghConn}?provider_config_key=${ids.gh}`, key: B.key });
    expect(miss.statusCode).toBe(404);

    // Same connection id in B: a new connection of B's, with B's token.
    await ok(
      t.call({
        method: 'POST',
        url: '/connection',
        key: B.key,
        payload: {
          connection_id: ids.ghConn,
          provider_config_key: ids.gh,
          credentials: { access_token: `b-token-${r}` },
          metadata: { owner: 'b' },
        },
      }),
    );
    const bConn = (await ok(t.call({ method: 'GET', url: `/connections/${ids.ghConn}?provider_config_key=${ids.gh}`, key: B.key }))).json();
    expect(bConn.credentials.access_token).toBe(`b-token-${r}`);
    expect(bConn.metadata).toEqual({ owner: 'b' });
    await ok(
      t.call({
        method: 'POST',
        url: '/connection/metadata',
        key: B.key,
        payload: { connection_id: ids.ghConn, provider_config_key: ids.gh, metadata: { owner: 'b2' } },
      }),
    );
    expect((await t.call({ method: 'GET', url: '/connection', key: B.key })).json().connections).toHaveLength(1);

    // A is untouched; then B deletes its integrations, and A still is.
    expect(await viewOfA()).toEqual(before);
    await ok(t.call({ method: 'DELETE', url: `/integration/${ids.gh}`, key: B.key }), 204);
    await ok(t.call({ method: 'DELETE', url: `/integrations/${ids.sg}`, key: B.key }));
    expect((await t.call({ method: 'GET', url: '/integration', key: B.key })).json().integrations).toEqual([]);
    expect(await viewOfA()).toEqual(before);
  });

  it("a connect session of B neither lists, starts nor connects A's integrations; session routes take no environment key", async () => {
    const before = await viewOfA();
    await resetB(async () => {});
    const b = await bSessionNow();
    const page = (cookie: string | undefined, url: string, form?: Record<string, string>) =>
      t.call({
        method: form ? 'POST' : 'GET',
        url,
        key: null,
        headers: { ...(cookie ? { cookie } : {}), ...(form ? { 'content-type': 'application/x-www-form-urlencoded' } : {}) },
        payload: form ? new URLSearchParams(form).toString() : undefined,
      });
    // With A's session, the requests below reach A's integrations (so the keys are real);
    // starting OAuth writes A's oauth_sessions row, so A's rows are taken after.
    expect((await page(aSession.cookie, `/connect/i/${ids.sg}`)).statusCode).toBe(200);
    const aStart = await page(aSession.cookie, `/oauth/connect/${ids.gh}`);
    expect(aStart.statusCode).toBe(302);
    expect(String(aStart.headers.location)).toContain(`client_id=${secrets.ghClientId}`);
    const rowsBefore = await snapshotA();
    /** A's values in a response, other than those in what was sent. */
    const leaks = (res: LightMyRequestResponse, sent: string) =>
      aValues.filter((v) => !sent.includes(v) && `${res.body}\n${JSON.stringify(res.headers)}`.includes(v));
    const listed = (res: LightMyRequestResponse) =>
      [...res.body.matchAll(/href="\/connect\/i\/([^"]+)"/g)].map((m) => decodeURIComponent(m[1]!));

    // A's session lists A's integrations (the control); B's lists none of them.
    const aList = await page(aSession.cookie, '/connect');
    expect(aList.statusCode).toBe(200);
    expect(listed(aList).sort()).toEqual([...aKeys].sort());
    expect(aList.body).toContain(values.sgDisplay);
    const bList = await page(b.cookie, '/connect');
    expect(bList.statusCode).toBe(200);
    expect(listed(bList)).toEqual([]);
    expect(leaks(bList, '')).toEqual([]);

    // B's session on A's keys: the same "no such integration" page as for a key that exists nowhere,
    // whether it opens the form, starts OAuth (cookie or token in the query) or posts credentials.
    const credentialsForm = { api_key: `b-typed-key-${r}`, username: 'b-user', password: `b-typed-pw-${r}`, store_domain: 'b.example.com' };
    for (const key of [...aKeys, `nx-key-${r}`]) {
      const sameAsMadeUp = (res: LightMyRequestResponse, url: string) => {
        expect(res.statusCode, `${url}: ${res.body.slice(0, 300)}`).toBe(403);
        expect(res.body, url).toContain(`There is no integration &quot;${key}&quot;`);
        expect(leaks(res, url), url).toEqual([]);
        expect(res.headers.location, url).toBeUndefined();
        return stripRandom(res.body).split(key).join('<key>');
      };
      const views = [
        sameAsMadeUp(await page(b.cookie, `/connect/i/${key}`), `GET /connect/i/${key}`),
        sameAsMadeUp(await page(b.cookie, `/connect/i/${key}`, credentialsForm), `POST /connect/i/${key}`),
        sameAsMadeUp(await page(b.cookie, `/oauth/connect/${key}`), `GET /oauth/connect/${key}`),
        sameAsMadeUp(
          await page(undefined, `/oauth/connect/${key}?connect_session_token=${b.token}`),
          `GET /oauth/connect/${key}?connect_session_token`,
        ),
      ];
      expect(new Set(views).size, key).toBe(1);
    }

    // A session of B cannot be made for A's integrations, nor re-authorize A's connection.
    const badAllowed = await t.call({
      method: 'POST',
      url: '/connect/sessions',
      key: B.key,
      payload: { end_user: { id: 'b' }, allowed_integrations: [ids.gh] },
    });
    expect(badAllowed.statusCode).toBe(400);
    expect(badAllowed.json().details[0].field).toBe('allowed_integrations[0]');
    const badDefaults = await t.call({
      method: 'POST',
      url: '/connect/sessions',
      key: B.key,
      payload: {
        end_user: { id: 'b' },
        integrations_config_defaults: { [ids.woo]: { connection_config: { store_domain: 'b.example.com' } } },
      },
    });
    expect(badDefaults.statusCode).toBe(400);
    const reconnect = await t.call({
      method: 'POST',
      url: '/connect/sessions/reconnect',
      key: B.key,
      payload: { connection_id: ids.ghConn, integration_id: ids.gh },
    });
    expect(reconnect.statusCode).toBe(404);
    expect(leaks(reconnect, JSON.stringify({ connection_id: ids.ghConn, integration_id: ids.gh }))).toEqual([]);

    // B's own integration under A's key: B's session connects it, in B; A's integration is untouched.
    const goodKey = `b-good-key-${r}`;
    const fakeApi = createServer((req, res) => {
      const good = req.headers.authorization === `Bearer ${goodKey}`;
      res
        .writeHead(good ? 200 : 401, { 'content-type': 'application/json' })
        .end(good ? '{"scopes":[]}' : '{"errors":[{"message":"bad key"}]}');
    });
    await new Promise<void>((resolve) => fakeApi.listen(0, '127.0.0.1', resolve));
    try {
      const apiBase = `http://127.0.0.1:${(fakeApi.address() as AddressInfo).port}`;
      await ok(
        t.call({
          method: 'POST',
          url: '/integration',
          key: B.key,
          payload: { provider_config_key: ids.sg, provider: 'sendgrid', api_base_url: apiBase },
        }),
      );
      const bList2 = await page(b.cookie, '/connect');
      expect(listed(bList2)).toEqual([ids.sg]);
      expect(leaks(bList2, ids.sg)).toEqual([]);
      const form = await page(b.cookie, `/connect/i/${ids.sg}`);
      expect(form.statusCode).toBe(200);
      expect(leaks(form, ids.sg)).toEqual([]);
      const done = await page(b.cookie, `/connect/i/${ids.sg}`, { api_key: goodKey });
      expect(done.statusCode, done.body.slice(0, 500)).toBe(200);
      expect(leaks(done, ids.sg)).toEqual([]);
      const bConnections = (await ok(t.call({ method: 'GET', url: '/connection', key: B.key }))).json().connections;
      expect(bConnections.map((c: { provider_config_key: string }) => c.provider_config_key)).toEqual([ids.sg]);
    } finally {
      await new Promise((resolve) => fakeApi.close(resolve));
    }

    // GET/DELETE /connect/session: each session sees only itself; environment keys are not session tokens.
    const bView = await t.call({ method: 'GET', url: '/connect/session', key: b.token });
    expect(bView.statusCode).toBe(200);
    expect(bView.json().data.end_user).toEqual({ id: `end-user-b-${r}` });
    expect(leaks(bView, '')).toEqual([]);
    for (const key of [A.key, B.key]) {
      for (const method of ['GET', 'DELETE'] as const) {
        const res = await t.call({ method, url: '/connect/session', key });
        expect(res.statusCode, `${method} with an environment key`).toBe(401);
        expect(leaks(res, '')).toEqual([]);
      }
    }
    expect((await t.call({ method: 'DELETE', url: '/connect/session', key: b.token })).statusCode).toBe(204);
    expect((await t.call({ method: 'GET', url: '/connect/session', key: b.token })).statusCode).toBe(401);
    expect((await page(b.cookie, '/connect')).statusCode).toBe(401);
    const aView = await ok(t.call({ method: 'GET', url: '/connect/session', key: aSession.token }));
    expect(aView.json().data).toMatchObject({
      end_user: { id: values.endUser },
      organization: { id: values.sessionOrg },
      tags: { team: values.sessionTag },
    });

    expect(await snapshotA()).toBe(rowsBefore);
    expect(await viewOfA()).toEqual(before);
    await resetB(async () => {});
  });

  it("admin routes reject both environments' keys with 403", async () => {
    const { routes: adminRoutes } = appRoutes('admin');
    expect(adminRoutes.length).toBeGreaterThanOrEqual(8);
    const before = await snapshotA();
    const problems: string[] = [];
    for (const route of adminRoutes) {
      for (const [label, env] of [
        ['A', A],
        ['B', B],
      ] as const) {
        for (const target of [A, B]) {
          const req = buildRequest(route, { ...targets[0]!.fill, accountId: target.accountId, environmentId: target.id }, doc);
          const res = await t.call({ ...req, payload: req.payload as never, key: env.key });
          if (res.statusCode !== 403 || res.json().error !== 'forbidden') {
            problems.push(`${req.method} ${req.url} with ${label}'s key: ${res.statusCode} ${res.body}`);
          }
        }
      }
    }
    expect(problems).toEqual([]);
    expect(await snapshotA()).toBe(before);

    // Control: the admin key does reach them, and both environment keys still work.
    expect((await t.call({ method: 'GET', url: `/admin/environments/${A.id}`, key: ADMIN_KEY })).statusCode).toBe(200);
    expect((await t.call({ method: 'GET', url: `/admin/accounts/${B.accountId}`, key: ADMIN_KEY })).statusCode).toBe(200);
    expect((await t.call({ method: 'GET', url: '/integration', key: A.key })).statusCode).toBe(200);
    expect((await t.call({ method: 'GET', url: '/integration', key: B.key })).statusCode).toBe(200);
  });
});
