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
 * It runs twice: with B empty, and with B holding integrations under the same keys as A's.
 *
 * Not every route is authorized by an environment key: GET/DELETE /connect/session take a connect
 * session token, and the hosted Connect pages and OAuth endpoints (hidden from OpenAPI) ignore
 * Authorization and use the session cookie. For those, "B" is a connect session of environment B
 * and the control is a session of A's (see `callerFor`).
 */
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { type SQL, sql } from 'drizzle-orm';
import type { LightMyRequestResponse } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADMIN_KEY, createTestApp, type TestApp, type TestEnvironment } from '../helpers/app.js';

// ---------------------------------------------------------------------------------------------
// OpenAPI walking and request filling
// ---------------------------------------------------------------------------------------------

type Schema = any;
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
}

const SKIPPED = [/^\/health$/, /^\/ready$/, /^\/docs($|\/|\*)/, /^\/openapi\.json$/];
const isAdmin = (path: string) => path === '/admin' || path.startsWith('/admin/');
const HTTP_METHODS = ['get', 'post', 'put', 'patch', 'delete'];

/**
 * Query or header parameters the generic filler cannot guess (a required `model`, …): add them
 * here when a new route needs one, so its A-key control call succeeds.
 */
const EXTRA_PARAMS: Record<string, string> = {};

/** The identifier a parameter or body field of this name carries, if any. */
function identValue(name: string, f: Fill): string | undefined {
  const n = name.toLowerCase().replace(/[^a-z]/g, '');
  // `key`: the Connect pages' /connect/i/:key; `allowed_integrations`: the keys a connect session may use.
  if (['providerconfigkey', 'uniquekey', 'integrationid', 'integrationkey', 'integration', 'key', 'allowedintegrations'].includes(n)) return f.key;
  if (['connectionid', 'connection'].includes(n)) return f.connectionId;
  if (['provider', 'providername', 'name'].includes(n)) return f.provider;
  if (n === 'accountid') return f.accountId;
  if (n === 'environmentid') return f.environmentId;
  return undefined;
}

function deref(schema: Schema, doc: OpenApiDoc): Schema {
  let s = schema;
  for (let i = 0; i < 10 && s && typeof s.$ref === 'string'; i++) {
    s = doc.components?.schemas?.[s.$ref.replace('#/components/schemas/', '')];
  }
  return s ?? {};
}

const typesOf = (s: Schema): string[] => (Array.isArray(s.type) ? s.type : s.type ? [s.type] : []);
const isRecordSchema = (s: Schema) => typesOf(s).includes('object') && !s.properties;

function acceptsString(schema: Schema, doc: OpenApiDoc): boolean {
  const s = deref(schema, doc);
  const options: Schema[] = s.anyOf ?? s.oneOf;
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
    const pick = options.map((o) => deref(o, doc)).find((o) => !typesOf(o).includes('array') && !typesOf(o).includes('null')) ?? options[0];
    return fillSchema(pick, name, f, doc, depth);
  }
  if (s.allOf?.length) return fillSchema(s.allOf[0], name, f, doc, depth);
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
function buildRequest(route: Route, f: Fill, doc: OpenApiDoc, bare = false): BuiltRequest {
  const params = route.op?.parameters ?? [];
  const url = route.path.replace(/\{([^}]+)\}/g, (_m, name: string) => {
    const value = identValue(name, f) ?? EXTRA_PARAMS[name] ?? placeholderFor(params.find((p) => p.in === 'path' && p.name === name), doc);
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

/** `GET /a/:b` lines of the router's own table (undocumented routes included). */
function routerRoutes(tree: string): { method: string; path: string }[] {
  const out: { method: string; path: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^([│ ]*)(?:├── |└── )(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    const full = (depth > 0 ? (stack[depth - 1] ?? '') : '') + m[2]!;
    stack[depth] = full;
    for (const method of m[3]?.split(',').map((x) => x.trim()) ?? []) out.push({ method, path: full });
  }
  return out;
}

const canonical = (path: string) => path.replace(/\{[^}]+\}/g, '{}').replace(/:[^/]+/g, '{}').replace(/\*/g, '{}');

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
};

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

const bSessionNow = async () => (bSession ??= await newSession(B, { end_user: { id: `end-user-b-${r}` } }));

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

/** A's data as A sees it through the API (what must survive the sweep unchanged). */
async function viewOfA() {
  const get = async (url: string) => (await ok(t.call({ method: 'GET', url, key: A.key }))).json();
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
  };
}

// ---------------------------------------------------------------------------------------------
// Database helpers (read-only for A; B is reset between mutating calls)
// ---------------------------------------------------------------------------------------------

let envTables: string[] = [];

async function rows(query: SQL): Promise<Record<string, unknown>[]> {
  return ((await t.db.database.db.execute(query)) as unknown as { rows: Record<string, unknown>[] }).rows;
}

/** Every row of A, byte for byte (as JSON text). */
async function snapshotA(): Promise<string> {
  const parts: string[] = [];
  for (const table of envTables) {
    const rs = await rows(sql`SELECT to_jsonb(x)::text AS row FROM ${sql.identifier(table)} x WHERE x.environment_id = ${A.id} ORDER BY 1`);
    parts.push(`${table}: ${rs.map((x) => x.row).join('\n')}`);
  }
  const env = await rows(sql`SELECT to_jsonb(x)::text AS row FROM environments x WHERE x.id = ${A.id}`);
  const account = await rows(sql`SELECT to_jsonb(x)::text AS row FROM accounts x WHERE x.id = ${A.accountId}`);
  parts.push(`environment: ${env.map((x) => x.row).join()}`, `account: ${account.map((x) => x.row).join()}`);
  return parts.join('\n');
}

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
  /** B's own state during the phase (re-created after every mutating call). */
  seedB(): Promise<void>;
  /** Providers B has installed in this phase. */
  bProviders: string[];
  /** Which identifiers the made-up variant replaces (those B does not hold itself). */
  randomize: ('key' | 'connectionId')[];
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
    const variants: { target: Target; bare: boolean }[] = targets.flatMap((target) => [
      { target, bare: false },
      ...(route.method === 'GET' ? [{ target, bare: true }] : []),
    ]);

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
      if (leaked.length) problems.push(`${where}: B's response (${bRes.statusCode}) contains A's ${leaked.join(', ')}: ${bRes.body.slice(0, 500)}`);
      for (const flag of installedFlags(parse(bRes))) {
        if (aProviders.includes(flag.name) && flag.installed !== phase.bProviders.includes(flag.name)) {
          problems.push(`${where}: B sees provider ${flag.name} as installed=${flag.installed}`);
        }
      }
      if (bRes.statusCode < 400 && route.method !== 'GET' && phase.name === 'B empty' && !route.documented) {
        problems.push(`${where}: undocumented route accepted B's write (${bRes.statusCode})`);
      }
      if (route.method !== 'GET') await resetB(phase.seedB);

      // 3. Same answer as for identifiers that exist nowhere.
      const madeUp: Fill = { ...target.fill };
      const subs: [string, string][] = [];
      const realSubs: [string, string][] = [];
      for (const field of phase.randomize) {
        madeUp[field] = `nx-${field === 'key' ? 'key' : 'conn'}-${randomBytes(5).toString('hex')}`;
        subs.push([madeUp[field], `<${field}>`]);
        realSubs.push([target.fill[field], `<${field}>`]);
      }
      const fake = buildRequest(route, madeUp, doc, bare);
      const fRes = await send(fake, await callerFor(route, 'B'));
      if (route.method !== 'GET') await resetB(phase.seedB);
      const realView = normalize(JSON.stringify(observable(route.method, bRes)), realSubs);
      const fakeView = normalize(JSON.stringify(observable(route.method, fRes)), subs);
      if (realView !== fakeView) problems.push(`${where}: B can tell A's identifiers exist:\n  real: ${realView}\n  made-up: ${fakeView}`);

      // 4. No key, or a well-formed key of no environment: 401 on every environment route. Session
      //    routes take neither environment's key; the pages ignore keys and want a live session cookie.
      const unauthorized: [string, Caller][] = isPage(route)
        ? [
            ['A\'s key and no cookie', { key: A.key }],
            ['B\'s key and no cookie', { key: B.key }],
            ['a cookie of no session', { key: null, cookie: `terapi_connect=${bogusSession}` }],
          ]
        : bySession(route)
          ? [
              ['no token', { key: null }],
              ['a session token of no session', { key: bogusSession }],
              ['an unknown key', { key: bogusKey }],
              ['A\'s environment key', { key: A.key }],
              ['B\'s environment key', { key: B.key }],
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
        } else if (!isPage(route)) {
          problems.push(`${where}: A's own control call got ${aRes.statusCode} ${aRes.body.slice(0, 300)} (extend EXTRA_PARAMS?)`);
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------

beforeAll(async () => {
  t = await createTestApp();
  A = t.env;
  B = await t.newEnvironment('prod');
  await seedA();
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
  targets = [
    {
      label: 'github',
      fill: { key: ids.gh, connectionId: ids.ghConn, provider: 'github', credentials: { access_token: `sweep-token-${r}` }, ...common },
    },
    {
      label: 'sendgrid',
      fill: { key: ids.sg, connectionId: ids.sgConn, provider: 'sendgrid', credentials: { api_key: `sweep-key-${r}` }, ...common },
    },
    {
      label: 'woocommerce',
      fill: {
        key: ids.woo,
        connectionId: ids.wooConn,
        provider: 'woocommerce',
        credentials: { username: 'sweep', password: `sweep-pw-${r}` },
        connectionConfig: { store_domain: 'sweep.example.com' },
        ...common,
      },
    },
  ];
  aKeys = [ids.gh, ids.sg, ids.woo];
  aValues = [...Object.values(ids), ...Object.values(secrets), `${secrets.ghAccess}-2`, ...Object.values(values), aSession.token];
});
afterAll(async () => t?.close());

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
  for (const x of routerRoutes(t.app.printRoutes({ commonPrefix: false }))) {
    if (x.method === 'HEAD' || x.method === 'OPTIONS' || !wanted(x.path)) continue;
    inRouter++;
    if (known.has(`${x.method} ${canonical(x.path)}`)) continue;
    known.add(`${x.method} ${canonical(x.path)}`);
    routes.push({ method: x.method, path: x.path.replace(/:([^/]+)/g, '{$1}').replace(/\*/g, '{*}'), documented: false });
  }
  return { routes, inRouter };
}

describe('tenancy: environment B against environment A', () => {
  it('the fixture is what the sweep assumes', async () => {
    const view = await viewOfA();
    expect(view.integrations.integrations.map((i: { unique_key: string; connection_count: number }) => [i.unique_key, i.connection_count])).toEqual([
      [ids.gh, 2],
      [ids.sg, 1],
      [ids.woo, 1],
    ]);
    expect(view.connections.connections).toHaveLength(4);
    expect(view.creds[ids.ghConn]).toMatchObject({
      metadata: { owner: values.ghMeta, nested: { plan: values.ghMetaNested }, merged: values.ghMetaMerged },
      credentials: { access_token: secrets.ghAccess, refresh_token: secrets.ghRefresh },
    });
    // B starts empty.
    expect((await ok(t.call({ method: 'GET', url: '/connection', key: B.key }))).json().connections).toEqual([]);
    expect((await ok(t.call({ method: 'GET', url: '/integration', key: B.key }))).json().integrations).toEqual([]);
  });

  it('every route, called with B\'s key on A\'s identifiers, neither reveals nor changes A\'s data', { timeout: 300_000 }, async () => {
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
    await sweep(routes, { name: 'B empty', seedB: async () => {}, bProviders: [], randomize: ['key', 'connectionId'], shared: [] }, problems, stats);

    // Phase 2: B has its own integrations under A's keys (keys are per environment) and a connection.
    const bConn = `conn-b-${r}`;
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
          payload: { connection_id: bConn, provider_config_key: ids.gh, credentials: { access_token: `b-token-${r}` }, metadata: { b: 'own' } },
        }),
      );
    };
    await sweep(routes, { name: 'B shadows A\'s keys', seedB: seedShadow, bProviders: aProviders, randomize: ['connectionId'], shared: aKeys }, problems, stats);
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
    ]) {
      expect(stats.documented, needed).toContain(needed);
    }
    expect(stats.calls).toBeGreaterThan(60);

    // A is exactly as before, seen through the API.
    expect(await viewOfA()).toEqual(before);
  });

  it('list filters and A\'s own page cursors never reach A\'s rows from B', async () => {
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
      expect(b.statusCode, url).toBe(200);
      expect(b.json().connections, url).toEqual([]);
      // The same query with A's key does find A's rows (so the filters were valid).
      expect((await ok(t.call({ method: 'GET', url, key: A.key }))).json().connections.length, url).toBeGreaterThan(0);
    }
  });

  it('GET /providers shows A\'s providers as not installed for B', async () => {
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

  it('B can create an integration and a connection under A\'s identifiers; they are B\'s own and A is untouched', async () => {
    const before = await viewOfA();
    const created = await ok(
      t.call({ method: 'POST', url: '/integration', key: B.key, payload: { provider_config_key: ids.gh, provider: 'github', oauth_client_id: 'b-client' } }),
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
        payload: { connection_id: ids.ghConn, provider_config_key: ids.gh, credentials: { access_token: `b-token-${r}` }, metadata: { owner: 'b' } },
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

  it('a connect session of B neither lists, starts nor connects A\'s integrations; session routes take no environment key', async () => {
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
    const listed = (res: LightMyRequestResponse) => [...res.body.matchAll(/href="\/connect\/i\/([^"]+)"/g)].map((m) => decodeURIComponent(m[1]!));

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
        sameAsMadeUp(await page(undefined, `/oauth/connect/${key}?connect_session_token=${b.token}`), `GET /oauth/connect/${key}?connect_session_token`),
      ];
      expect(new Set(views).size, key).toBe(1);
    }

    // A session of B cannot be made for A's integrations, nor re-authorize A's connection.
    const badAllowed = await t.call({ method: 'POST', url: '/connect/sessions', key: B.key, payload: { end_user: { id: 'b' }, allowed_integrations: [ids.gh] } });
    expect(badAllowed.statusCode).toBe(400);
    expect(badAllowed.json().details[0].field).toBe('allowed_integrations[0]');
    const badDefaults = await t.call({
      method: 'POST',
      url: '/connect/sessions',
      key: B.key,
      payload: { end_user: { id: 'b' }, integrations_config_defaults: { [ids.woo]: { connection_config: { store_domain: 'b.example.com' } } } },
    });
    expect(badDefaults.statusCode).toBe(400);
    const reconnect = await t.call({ method: 'POST', url: '/connect/sessions/reconnect', key: B.key, payload: { connection_id: ids.ghConn, integration_id: ids.gh } });
    expect(reconnect.statusCode).toBe(404);
    expect(leaks(reconnect, JSON.stringify({ connection_id: ids.ghConn, integration_id: ids.gh }))).toEqual([]);

    // B's own integration under A's key: B's session connects it, in B; A's integration is untouched.
    const goodKey = `b-good-key-${r}`;
    const fakeApi = createServer((req, res) => {
      const good = req.headers.authorization === `Bearer ${goodKey}`;
      res.writeHead(good ? 200 : 401, { 'content-type': 'application/json' }).end(good ? '{"scopes":[]}' : '{"errors":[{"message":"bad key"}]}');
    });
    await new Promise<void>((resolve) => fakeApi.listen(0, '127.0.0.1', resolve));
    try {
      const apiBase = `http://127.0.0.1:${(fakeApi.address() as AddressInfo).port}`;
      await ok(t.call({ method: 'POST', url: '/integration', key: B.key, payload: { provider_config_key: ids.sg, provider: 'sendgrid', api_base_url: apiBase } }));
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
    expect(aView.json().data).toMatchObject({ end_user: { id: values.endUser }, organization: { id: values.sessionOrg }, tags: { team: values.sessionTag } });

    expect(await snapshotA()).toBe(rowsBefore);
    expect(await viewOfA()).toEqual(before);
    await resetB(async () => {});
  });

  it('admin routes reject both environments\' keys with 403', async () => {
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
