import { expect } from 'vitest';
import type { TestApp } from './app.js';

/** Polls until `fn` returns something truthy; the bound only stops a test that would otherwise hang. */
export async function until<T>(
  what: string,
  fn: () => Promise<T | undefined | false | null>,
  timeoutMs = 120_000,
  everyMs = 100,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** An integration of `provider` whose API is the fake at `baseUrl`, and one connection holding `token`. */
export async function connectFake(
  t: TestApp,
  o: { key: string; provider: string; baseUrl: string; token: string; connectionId: string; metadata?: Record<string, unknown> },
) {
  const i = await t.call({
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: o.key,
      provider: o.provider,
      oauth_client_id: 'id',
      oauth_client_secret: 'secret',
      api_base_url: o.baseUrl,
    },
  });
  if (i.statusCode !== 200 && !(i.statusCode === 409)) expect(i.statusCode, i.body).toBe(200);
  const c = await t.call({
    method: 'POST',
    url: '/connection',
    payload: {
      connection_id: o.connectionId,
      provider_config_key: o.key,
      credentials: { type: 'OAUTH2', access_token: o.token },
      metadata: o.metadata,
    },
  });
  expect(c.statusCode, c.body).toBe(200);
}

export async function enable(t: TestApp, key: string, name: string, body: Record<string, unknown> = {}) {
  const r = await t.call({ method: 'POST', url: `/integration/${key}/functions`, payload: { name, ...body } });
  expect([200, 201], r.body).toContain(r.statusCode);
  return r.json();
}

export async function syncStatus(t: TestApp, key: string, connectionId: string, name: string) {
  const r = await t.call({ method: 'GET', url: `/sync/${connectionId}/${name}?provider_config_key=${key}` });
  expect(r.statusCode, r.body).toBe(200);
  return r.json<{
    status: string;
    records_count: number;
    last_sync_date: string | null;
    next_sync_date: string | null;
    error: string | null;
  }>();
}

/** Waits for a sync run that finished after `since` (the last_sync_date moves) and returns the status. */
export async function waitForRun(
  t: TestApp,
  key: string,
  connectionId: string,
  name: string,
  since: string | null = null,
  timeoutMs = 120_000,
) {
  return until(
    `a finished run of ${name}`,
    async () => {
      const s = await syncStatus(t, key, connectionId, name);
      return s.status !== 'running' && s.last_sync_date !== since && s.last_sync_date ? s : undefined;
    },
    timeoutMs,
  );
}

export interface RecordOut {
  id: string;
  _nango_metadata: { last_action: string; deleted_at: string | null; cursor: string; first_seen_at: string; last_modified_at: string };
  [k: string]: unknown;
}

export async function recordsPage(t: TestApp, key: string, connectionId: string, query: string) {
  const r = await t.call({
    method: 'GET',
    url: `/records?${query}`,
    headers: { 'connection-id': connectionId, 'provider-config-key': key },
  });
  return r;
}

/** Every record of the feed from `cursor` on, following next_cursor. */
export async function allRecords(
  t: TestApp,
  key: string,
  connectionId: string,
  model: string,
  opts: { limit?: number; cursor?: string; extra?: string } = {},
) {
  const out: RecordOut[] = [];
  let cursor = opts.cursor;
  let last: string | undefined = cursor;
  for (;;) {
    const r = await recordsPage(
      t,
      key,
      connectionId,
      `model=${model}&limit=${opts.limit ?? 1000}${cursor ? `&cursor=${cursor}` : ''}${opts.extra ?? ''}`,
    );
    expect(r.statusCode, r.body).toBe(200);
    const body = r.json<{ records: RecordOut[]; next_cursor: string | null }>();
    out.push(...body.records);
    if (body.records.length) last = body.records.at(-1)!._nango_metadata.cursor;
    if (!body.next_cursor) return { records: out, cursor: last };
    cursor = body.next_cursor;
  }
}
