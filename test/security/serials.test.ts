/**
 * No response carries a server-wide serial number: a tenant cannot read from an id how many
 * events, syncs or log lines the whole server holds. Webhook `eventId` (and the delivery log's
 * `event_id`), run log line `id` / `next_after`, and the Nango-compatible `/sync/status` `id` are
 * opaque values bound to their environment (and run), stable for the same row; the paging
 * parameter `after` accepts only what the API handed out for that run.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { queryRows } from '../../src/db/client.js';
import { defineSync } from '../../src/functions/define.js';
import { positionCursors } from '../../src/lib/cursor.js';
import { createTestApp, type TestApp, type TestEnvironment } from '../helpers/app.js';

const LINES = 7;
const logging = defineSync({
  name: 'serials-test',
  description: 'test: writes a few log lines and one record',
  models: { Item: z.object({ id: z.string() }) },
  frequency: '1d',
  syncType: 'incremental',
  autoStart: true,
  exec: async (ctx) => {
    for (let n = 0; n < LINES; n++) ctx.log.info(`line ${n}`);
    await ctx.batchSave('Item', [{ id: 'one' }]);
  },
});

/** A webhook endpoint that records every request (failed ones too), answering 503 while `down`. */
class Receiver {
  server: Server;
  base = '';
  down = false;
  received: { path: string; deliveryId: string; body: Record<string, unknown> }[] = [];
  constructor() {
    this.server = createServer((req, res) => {
      let raw = '';
      req.on('data', (c: Buffer) => (raw += c.toString('utf8')));
      req.on('end', () => {
        this.received.push({ path: req.url ?? '', deliveryId: String(req.headers['terapi-webhook-id']), body: JSON.parse(raw) });
        res.writeHead(this.down ? 503 : 200).end();
      });
    });
  }
  async start() {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.base = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }
}

const OPAQUE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/;
const CONNECTIONS = ['acme', 'beta'];
const rx = new Receiver();
let t: TestApp;
let A: TestEnvironment;
let B: TestEnvironment;

const call = (env: TestEnvironment, method: 'GET' | 'POST' | 'PUT', url: string, payload?: Record<string, unknown>) =>
  t.call({ method, url, key: env.key, ...(payload && { payload }) });

async function setUp(env: TestEnvironment) {
  const integration = await call(env, 'POST', '/integration', {
    provider_config_key: 'gh',
    provider: 'github',
    oauth_client_id: 'id',
    oauth_client_secret: 's',
  });
  expect(integration.statusCode, integration.body).toBe(200);
  const hooks = await call(env, 'PUT', '/environment/webhooks', { urls: [`${rx.base}/${env.id}/one`, `${rx.base}/${env.id}/two`] });
  expect(hooks.statusCode, hooks.body).toBe(200);
  for (const id of CONNECTIONS) {
    const c = await call(env, 'POST', '/connection', {
      connection_id: id,
      provider_config_key: 'gh',
      credentials: { type: 'OAUTH2', access_token: 'gho_x' },
    });
    expect(c.statusCode, c.body).toBe(200);
  }
  expect((await call(env, 'POST', '/integration/gh/functions', { name: 'serials-test' })).statusCode).toBe(201);
  const syncs = await queryRows<{ id: string }>(
    t.db.database.db,
    sql`SELECT id FROM syncs WHERE environment_id = ${env.id} AND name = 'serials-test'`,
  );
  for (const s of syncs) expect(await t.services.syncRunner.run(Number(s.id))).toBe('ran');
}

async function runOf(env: TestEnvironment, connectionId: string): Promise<string> {
  const res = await call(env, 'GET', `/sync/${connectionId}/serials-test/runs?provider_config_key=gh`);
  expect(res.statusCode, res.body).toBe(200);
  return res.json().runs[0].id;
}

interface LogPage {
  logs: { id: string; message: string }[];
  next_after: string | null;
}

const logs = (env: TestEnvironment, runId: string, query = '') => call(env, 'GET', `/runs/${runId}/logs${query}`);

const refusesAfter = (res: { statusCode: number; body: string; json(): unknown }) => {
  expect(res.statusCode, res.body).toBe(400);
  expect(res.json()).toMatchObject({ error: 'invalid_request', details: [{ field: 'after' }] });
};

async function deliveries(env: TestEnvironment) {
  const res = await call(env, 'GET', '/environment/webhooks/deliveries?limit=200');
  expect(res.statusCode, res.body).toBe(200);
  return res.json().deliveries as { id: string; event_id: string; type: string; url: string }[];
}

beforeAll(async () => {
  await rx.start();
  t = await createTestApp({ extraFunctions: { github: [logging] } });
  A = t.env;
  B = await t.newEnvironment();
  await setUp(A);
  await setUp(B);
});
afterAll(async () => {
  await t?.close();
  await new Promise((r) => rx.server.close(r));
});

describe('run log lines', () => {
  it('carry opaque ids, not the server-wide row numbers, stable across reads', async () => {
    const run = await runOf(A, 'acme');
    const all = (await logs(A, run, '?limit=1000')).json<LogPage>();
    const rows = await queryRows<{ id: string }>(
      t.db.database.db,
      sql`SELECT id::text AS id FROM run_logs WHERE run_id = ${run} ORDER BY id`,
    );
    expect(all.logs.length).toBe(rows.length);
    expect(all.logs.filter((l) => /^line \d$/.test(l.message))).toHaveLength(LINES);
    for (const [i, line] of all.logs.entries()) {
      expect(line.id).toMatch(OPAQUE);
      expect(line.id).not.toBe(rows[i]!.id);
      expect(Number.isNaN(Number(line.id))).toBe(true);
    }
    expect(new Set(all.logs.map((l) => l.id)).size).toBe(all.logs.length);
    expect(all.next_after).toBeNull();
    expect((await logs(A, run, '?limit=1000')).json<LogPage>().logs.map((l) => l.id)).toEqual(all.logs.map((l) => l.id));

    // The same run's lines in B's scope would carry other values: the id is bound to its tenant.
    const inB = positionCursors(t.vault, `run-logs:${B.id}:${run}`);
    expect(all.logs.map((l) => l.id)).not.toEqual(rows.map((r) => inB.seal(Number(r.id))));
  });

  it('page with `after` (next_after, or any line id of the run)', async () => {
    const run = await runOf(A, 'acme');
    const all = (await logs(A, run, '?limit=1000')).json<LogPage>().logs;
    const seen: string[] = [];
    let after: string | null = null;
    do {
      const res = await logs(A, run, `?limit=3${after ? `&after=${after}` : ''}`);
      expect(res.statusCode, res.body).toBe(200);
      const page = res.json<LogPage>();
      seen.push(...page.logs.map((l) => l.message));
      after = page.next_after;
      if (after) expect(after).toBe(page.logs.at(-1)!.id);
    } while (after);
    expect(seen).toEqual(all.map((l) => l.message));
    const fromThird = (await logs(A, run, `?after=${all[2]!.id}`)).json<LogPage>();
    expect(fromThird.logs.map((l) => l.message)).toEqual(all.slice(3).map((l) => l.message));
  });

  it('refuse an `after` of another run, another environment, the old numeric form, or forged', async () => {
    const acme = await runOf(A, 'acme');
    const beta = await runOf(A, 'beta');
    const inB = await runOf(B, 'acme');
    const acmeIds = (await logs(A, acme, '?limit=1000')).json<LogPage>().logs.map((l) => l.id);
    const betaIds = (await logs(A, beta, '?limit=1000')).json<LogPage>().logs.map((l) => l.id);
    expect((await logs(A, acme, `?after=${acmeIds[0]}`)).statusCode).toBe(200);
    refusesAfter(await logs(A, beta, `?after=${acmeIds[0]}`));
    refusesAfter(await logs(B, inB, `?after=${acmeIds[0]}`));
    refusesAfter(await logs(A, acme, `?after=${betaIds[0]}`));
    const [first] = await queryRows<{ id: string }>(t.db.database.db, sql`SELECT min(id)::text AS id FROM run_logs WHERE run_id = ${acme}`);
    refusesAfter(await logs(A, acme, `?after=${first!.id}`));
    refusesAfter(await logs(A, acme, '?after=0'));
    refusesAfter(await logs(A, acme, `?after=${acmeIds[0]!.split('.')[0]}.${'A'.repeat(22)}`));
    refusesAfter(await logs(A, acme, '?after=no%20cursor'));
  });
});

describe('Nango /sync/status id', () => {
  it('is opaque, stable, and not the syncs row number', async () => {
    const status = async (env: TestEnvironment) => {
      const res = await call(env, 'GET', '/sync/status?provider_config_key=gh&syncs=*');
      expect(res.statusCode, res.body).toBe(200);
      return res.json().syncs as { id: string; connection_id: string }[];
    };
    const first = await status(A);
    expect(first.map((s) => s.connection_id).sort()).toEqual(CONNECTIONS);
    expect(await status(A)).toEqual(first);
    const rows = await queryRows<{ id: string; connection_id: string }>(
      t.db.database.db,
      sql`SELECT s.id::text AS id, c.connection_id FROM syncs s JOIN connections c ON c.id = s.connection_pk
          WHERE s.environment_id = ${A.id} AND s.name = 'serials-test'`,
    );
    const inB = positionCursors(t.vault, `sync:${B.id}`);
    for (const s of first) {
      const row = rows.find((r) => r.connection_id === s.connection_id)!;
      expect(s.id).toMatch(OPAQUE);
      expect(s.id).not.toBe(row.id);
      expect(s.id).not.toBe(inB.seal(Number(row.id)));
    }
    const bIds = (await status(B)).map((s) => s.id);
    expect(bIds.filter((id) => first.some((s) => s.id === id))).toEqual([]);
  });
});

describe('webhook eventId', () => {
  it('is opaque, the same for every delivery and attempt of one event, and shown as event_id in the delivery log', async () => {
    expect(await t.services.webhooks.dispatch()).toBeGreaterThan(0);
    const listed = await deliveries(A);
    // Two auth events (imports) and two sync events, each delivered to both URLs.
    expect(listed).toHaveLength(8);
    rx.down = true;
    for (const d of listed) await expect(t.services.webhooks.deliver(d.id, false)).rejects.toThrow(/503/);
    rx.down = false;
    for (const d of listed) await t.services.webhooks.deliver(d.id, false);
    // A manual resend of a delivered one.
    const resent = listed[0]!;
    expect((await call(A, 'POST', `/environment/webhooks/deliveries/${resent.id}/retry`)).statusCode).toBe(202);
    await t.services.webhooks.deliver(resent.id, false);

    const events = await queryRows<{ id: string }>(t.db.database.db, sql`SELECT id::text AS id FROM events WHERE environment_id = ${A.id}`);
    expect(events).toHaveLength(4);
    for (const d of listed) {
      const bodies = rx.received.filter((r) => r.deliveryId === d.id).map((r) => r.body);
      expect(bodies.length).toBe(d.id === resent.id ? 3 : 2);
      for (const body of bodies) expect(body.eventId).toBe(d.event_id);
      expect(d.event_id).toMatch(OPAQUE);
      expect(events.map((e) => e.id)).not.toContain(d.event_id);
    }
    // One id per event: both URLs' deliveries of an event share it, and no two events do.
    const byEvent = new Map<string, string[]>();
    for (const d of listed) byEvent.set(d.event_id, [...(byEvent.get(d.event_id) ?? []), d.url]);
    expect(byEvent.size).toBe(4);
    for (const urls of byEvent.values()) expect(urls.map((u) => u.split('/').at(-1)).sort()).toEqual(['one', 'two']);

    // The same events sealed for B would read differently; B's event ids are B's own.
    const inB = positionCursors(t.vault, `event:${B.id}`);
    for (const e of events) expect(byEvent.has(inB.seal(Number(e.id)))).toBe(false);
    const bListed = await deliveries(B);
    expect(bListed).toHaveLength(8);
    expect(bListed.filter((d) => byEvent.has(d.event_id))).toEqual([]);
  });
});
