/**
 * `/v1` is the complete versioned Terapi API: every route of the Terapi API (everything but the
 * Nango-compatible paths, the admin API, health checks and the hosted Connect pages) has a `/v1`
 * twin with the same handler. Walks the router's own table, so a new route without a twin fails.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { v1Family } from '../../src/http/families.js';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { routerRoutes } from '../helpers/routes.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
});
afterAll(async () => t?.close());

/** Where a Terapi API path lives under /v1: seed 000's plural paths, else the same path under /v1. */
function v1Path(path: string): string {
  for (const [from, to] of [
    ['/connection', '/v1/connections'],
    ['/integration', '/v1/integrations'],
    ['/action', '/v1/actions'],
  ] as const) {
    if (path === from || path.startsWith(`${from}/`)) return to + path.slice(from.length);
  }
  return `/v1${path}`;
}

const toOpenApi = (path: string) => path.replace(/:([^/]+)/g, '{$1}');

describe('/v1', () => {
  it('has a twin of every Terapi API route, with the same parameters and a v1 operationId', async () => {
    const doc = t.app.swagger() as unknown as {
      paths: Record<string, Record<string, { operationId: string; parameters?: { name: string; in: string }[] }>>;
    };
    const routes = routerRoutes(t.app).filter((r) => r.method !== 'HEAD' && r.method !== 'OPTIONS');
    const inRouter = new Set(routes.map((r) => `${r.method} ${toOpenApi(r.path)}`));

    const native = routes.filter((r) => {
      const op = doc.paths[toOpenApi(r.path)]?.[r.method.toLowerCase()];
      // Undocumented routes are the hosted Connect pages, OAuth redirects and the docs themselves.
      if (!op) return false;
      if (/^(nango|admin|v1)/.test(op.operationId)) return false;
      return !['/health', '/ready'].includes(r.path);
    });
    // Not vacuous: the whole Terapi API is seen, including the routes /v1 used to lack.
    const seen = new Set(native.map((r) => `${r.method} ${toOpenApi(r.path)}`));
    for (const x of [
      'GET /records',
      'GET /providers',
      'GET /runs/{run_id}',
      'GET /environment/webhooks/deliveries',
      'POST /connect/sessions',
      'GET /connect/session',
      'GET /connection/{connection_id}',
      'PATCH /integration/{provider_config_key}',
      'GET /auth/token/{provider_config_key}/{connection_id}',
      'GET /action/{id}',
    ]) {
      expect(seen, x).toContain(x);
    }

    const missing: string[] = [];
    for (const r of native) {
      const path = toOpenApi(r.path);
      const twin = v1Path(path);
      if (!inRouter.has(`${r.method} ${twin}`)) {
        missing.push(`${r.method} ${path} → ${twin}`);
        continue;
      }
      const op = doc.paths[path]![r.method.toLowerCase()]!;
      const v1Op = doc.paths[twin]![r.method.toLowerCase()]!;
      expect(v1Op.operationId, twin).toBe(v1Family.operationId(op.operationId));
      expect(v1Op.parameters?.map((p) => `${p.in}:${p.name}`).sort(), twin).toEqual(op.parameters?.map((p) => `${p.in}:${p.name}`).sort());
    }
    expect(missing).toEqual([]);
  });

  it('serves the paths seed 000 defines', async () => {
    const doc = t.app.swagger() as unknown as { paths: Record<string, Record<string, unknown>> };
    for (const [method, path] of [
      ['get', '/v1/connections'],
      ['post', '/v1/connections'],
      ['get', '/v1/connections/{connection_id}'],
      ['delete', '/v1/connections/{connection_id}'],
      ['get', '/v1/integrations'],
      ['post', '/v1/integrations'],
      ['get', '/v1/integrations/{provider_config_key}'],
      ['delete', '/v1/integrations/{provider_config_key}'],
      ['post', '/v1/sync/trigger'],
      ['get', '/v1/sync/{connection_id}/{sync_name}'],
      ['post', '/v1/actions/trigger'],
      ['get', '/v1/auth/token/{provider_config_key}/{connection_id}'],
    ] as const) {
      expect(doc.paths[path]?.[method], `${method} ${path}`).toBeDefined();
    }
  });

  it('answers the twins with the same handlers', async () => {
    for (const [native, v1] of [
      ['/providers?search=github', '/v1/providers?search=github'],
      ['/environment/webhooks', '/v1/environment/webhooks'],
      ['/environment/webhooks/deliveries?limit=5', '/v1/environment/webhooks/deliveries?limit=5'],
    ]) {
      const a = await t.call({ method: 'GET', url: native! });
      const b = await t.call({ method: 'GET', url: v1! });
      expect(a.statusCode, native).toBe(200);
      expect(b.statusCode, v1).toBe(200);
      expect(b.json()).toEqual(a.json());
    }
    const session = await t.call({ method: 'POST', url: '/v1/connect/sessions', payload: { end_user: { id: 'u-1' } } });
    expect(session.statusCode, session.body).toBe(201);
    const token = session.json().data.token as string;
    const self = await t.app.inject({ method: 'GET', url: '/v1/connect/session', headers: { authorization: `Bearer ${token}` } });
    expect(self.statusCode, self.body).toBe(200);
    expect(self.json()).toEqual(
      (await t.app.inject({ method: 'GET', url: '/connect/session', headers: { authorization: `Bearer ${token}` } })).json(),
    );
    // Unknown runs and action runs answer like their Terapi twins.
    const id = '00000000-0000-4000-8000-000000000000';
    for (const [native, v1] of [
      [`/runs/${id}`, `/v1/runs/${id}`],
      [`/action/${id}`, `/v1/actions/${id}`],
    ]) {
      const a = await t.call({ method: 'GET', url: native! });
      const b = await t.call({ method: 'GET', url: v1! });
      expect(a.statusCode).toBe(404);
      expect(b.statusCode).toBe(404);
      expect(b.json()).toEqual(a.json());
    }
  });
});
