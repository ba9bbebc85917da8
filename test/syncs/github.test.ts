import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { allRecords, connectFake, enable, recordsPage, syncStatus, until, waitForRun } from '../helpers/syncs.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';

let t: TestApp;
let gh: FakeGithub;
let repos: string[];
const KEY = 'github';
const CONN = 'octo';

const runsOf = async (name: string) => {
  const r = await t.call({ method: 'GET', url: `/sync/${CONN}/${name}/runs?provider_config_key=${KEY}` });
  expect(r.statusCode, r.body).toBe(200);
  return r.json().runs as {
    id: string;
    status: string;
    trigger: string;
    added: number;
    updated: number;
    deleted: number;
    error: { message: string } | null;
  }[];
};

beforeAll(async () => {
  gh = await startFakeGithub();
  repos = gh.controls.seed({ repos: 2, issuesPerRepo: 130, prsPerRepo: 12 });
  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true } });
  await connectFake(t, { key: KEY, provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: CONN });
});
afterAll(async () => {
  await t?.close();
  await gh?.close();
});

describe('GitHub issues (incremental sync)', () => {
  let firstCursor: string | undefined;

  it('runs on enable, stores every issue (not the pull requests) and reports status', async () => {
    const fn = await enable(t, KEY, 'issues', { frequency: '15m' });
    expect(fn).toMatchObject({
      name: 'issues',
      type: 'sync',
      enabled: true,
      sync_type: 'incremental',
      frequency: '15m',
      models: ['GithubIssue'],
    });
    const s = await waitForRun(t, KEY, CONN, 'issues');
    expect(s).toMatchObject({ status: 'success', records_count: 260, error: null });
    expect(Date.parse(s.next_sync_date!) - Date.parse(s.last_sync_date!)).toBeGreaterThan(14 * 60_000);
    const { records, cursor } = await allRecords(t, KEY, CONN, 'GithubIssue', { limit: 100 });
    expect(records).toHaveLength(260);
    expect(new Set(records.map((r) => r.id)).size).toBe(260);
    expect(records.every((r) => r._nango_metadata.last_action === 'ADDED')).toBe(true);
    expect(records[0]).toMatchObject({ repository: expect.stringMatching(/\/repo-/), title: expect.any(String) });
    firstCursor = cursor;
    const [run] = await runsOf('issues');
    expect(run).toMatchObject({ status: 'success', added: 260, updated: 0, deleted: 0 });
  });

  it('a second run fetches only what changed, and the feed from the last cursor holds exactly those changes', async () => {
    const before = await syncStatus(t, KEY, CONN, 'issues');
    gh.controls.updateIssue(repos[0]!, 3, { title: 'renamed' });
    gh.controls.updateIssue(repos[1]!, 5, { labels: ['bug'] });
    gh.controls.addIssue(repos[1]!, { title: 'brand new' });
    gh.controls.clearRequests();
    const tr = await t.call({
      method: 'POST',
      url: '/sync/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] },
    });
    expect(tr.statusCode, tr.body).toBe(200);
    expect(tr.json()).toEqual({ success: true, syncs: [{ name: 'issues', status: 'queued' }] });
    await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
    // Incremental: every issues request carries `since` (from the checkpoint).
    const issueRequests = gh.controls.requests.filter((r) => /\/issues$/.test(r.path));
    expect(issueRequests.length).toBeGreaterThan(0);
    expect(issueRequests.every((r) => r.query.since)).toBe(true);
    const { records } = await allRecords(t, KEY, CONN, 'GithubIssue', { cursor: firstCursor });
    expect(records.map((r) => [r.title === 'brand new' ? 'new' : r.id, r._nango_metadata.last_action]).sort()).toEqual(
      [
        ['new', 'ADDED'],
        expect.arrayContaining([expect.any(String), 'UPDATED']),
        expect.arrayContaining([expect.any(String), 'UPDATED']),
      ].sort(),
    );
    expect(records).toHaveLength(3);
    const [run] = await runsOf('issues');
    expect(run).toMatchObject({ status: 'success', added: 1, updated: 2, deleted: 0, trigger: 'manual' });
  });

  it('re-running with nothing changed rewrites nothing', async () => {
    const before = await syncStatus(t, KEY, CONN, 'issues');
    await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] } });
    await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
    const [run] = await runsOf('issues');
    expect(run).toMatchObject({ status: 'success', added: 0, updated: 0, deleted: 0 });
  });

  it('reset runs a full resync: the checkpoint is ignored and issues gone upstream are marked deleted', async () => {
    const before = await syncStatus(t, KEY, CONN, 'issues');
    gh.controls.deleteIssue(repos[0]!, 7);
    gh.controls.clearRequests();
    const tr = await t.call({
      method: 'POST',
      url: '/sync/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'], reset: true },
    });
    expect(tr.statusCode).toBe(200);
    await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
    expect(gh.controls.requests.some((r) => /\/issues$/.test(r.path) && !r.query.since)).toBe(true);
    const [run] = await runsOf('issues');
    expect(run).toMatchObject({ status: 'success', added: 0, updated: 0, deleted: 1 });
    const deleted = await recordsPage(t, KEY, CONN, 'model=GithubIssue&filter=deleted');
    expect(deleted.json().records).toHaveLength(1);
    expect(deleted.json().records[0]._nango_metadata).toMatchObject({ last_action: 'DELETED', deleted_at: expect.any(String) });
    expect((await syncStatus(t, KEY, CONN, 'issues')).records_count).toBe(260);
  });

  it('a trigger during a run is queued once, not stacked', async () => {
    const before = (await runsOf('issues')).length;
    gh.controls.delayMs = 150;
    try {
      await t.call({
        method: 'POST',
        url: '/sync/trigger',
        payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'], reset: true },
      });
      await until(
        'the run to start',
        async () => (await syncStatus(t, KEY, CONN, 'issues')).status === 'running' && (await runsOf('issues'))[0]!.status === 'running',
      );
      for (let i = 0; i < 5; i++) {
        const r = await t.call({
          method: 'POST',
          url: '/sync/trigger',
          payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] },
        });
        expect(r.json().syncs[0].status).toBe('queued_after_current_run');
      }
    } finally {
      gh.controls.delayMs = 0;
    }
    await until('two runs', async () => {
      const runs = await runsOf('issues');
      return runs.length === before + 2 && runs.every((r) => r.status === 'success');
    });
    await new Promise((r) => setTimeout(r, 1500));
    expect(await runsOf('issues')).toHaveLength(before + 2);
  });
});

describe('records feed while a sync writes', () => {
  it('paging with the cursor during a running sync never skips and never repeats a change', async () => {
    const KEY2 = 'github-big';
    const big = await startFakeGithub();
    try {
      big.controls.seed({ repos: 3, issuesPerRepo: 700 });
      await connectFake(t, { key: KEY2, provider: 'github', baseUrl: big.url, token: big.token, connectionId: CONN });
      big.controls.delayMs = 15;
      await enable(t, KEY2, 'issues');
      const seen = new Map<string, number>();
      let cursor: string | undefined;
      let finished = false;
      let pages = 0;
      while (!finished) {
        const s = await syncStatus(t, KEY2, CONN, 'issues');
        finished = s.status === 'success';
        // Drain what is there now, 50 at a time, while the sync keeps writing.
        for (;;) {
          const r = await recordsPage(t, KEY2, CONN, `model=GithubIssue&limit=50${cursor ? `&cursor=${cursor}` : ''}`);
          expect(r.statusCode, r.body).toBe(200);
          const body = r.json();
          pages++;
          for (const rec of body.records) seen.set(rec.id, (seen.get(rec.id) ?? 0) + 1);
          if (body.records.length) cursor = body.records.at(-1)._nango_metadata.cursor;
          if (!body.next_cursor) break;
        }
        if (!finished) await new Promise((r) => setTimeout(r, 30));
      }
      expect(pages).toBeGreaterThan(10);
      expect(seen.size).toBe(2100);
      expect([...seen.values()].every((n) => n === 1)).toBe(true);
    } finally {
      await big.close();
    }
  });
});

describe('GitHub pull requests (full sync)', () => {
  it('detects deletions only when the run succeeds', async () => {
    const fn = await enable(t, KEY, 'pull-requests', { auto_start: true });
    expect(fn).toMatchObject({ sync_type: 'full', auto_start: true });
    const first = await waitForRun(t, KEY, CONN, 'pull-requests');
    expect(first.records_count).toBe(24);
    const pr = gh.state.issues.find((i) => i.pull && i.repo.toLowerCase() === repos[0]!.toLowerCase());
    gh.controls.deleteIssue(repos[0]!, pr!.number);
    // A failing run (the provider keeps answering HTML 502) deletes nothing.
    // Test config: 3 retries, so the first request fails for good after 4 answers.
    gh.controls.failNext(4, 502, { html: true });
    await t.call({
      method: 'POST',
      url: '/sync/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['pull-requests'] },
    });
    const failed = await waitForRun(t, KEY, CONN, 'pull-requests', first.last_sync_date);
    expect(failed.status).toBe('error');
    expect(failed.error).toMatch(/502|HTML/);
    expect(failed.records_count).toBe(24);
    await t.call({
      method: 'POST',
      url: '/sync/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['pull-requests'] },
    });
    const ok = await waitForRun(t, KEY, CONN, 'pull-requests', failed.last_sync_date);
    expect(ok).toMatchObject({ status: 'success', records_count: 23, error: null });
  });
});

describe('rate limits', () => {
  it('waits out primary (403) and secondary (429) rate limits and succeeds', async () => {
    const before = await syncStatus(t, KEY, CONN, 'issues');
    // Three answers in a row (test config: 3 retries per call): the fourth attempt goes through.
    gh.controls.rateLimitNext(2, { kind: 'primary', retryAfterSeconds: 1 });
    gh.controls.rateLimitNext(1, { kind: 'secondary', retryAfterSeconds: 1 });
    gh.controls.clearRequests();
    const t0 = Date.now();
    await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'] } });
    const s = await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
    expect(s.status).toBe('success');
    expect(gh.controls.requests.filter((r) => r.fault === 'rate-limit')).toHaveLength(3);
    expect(Date.now() - t0).toBeGreaterThan(2000);
  });
});

describe('GitHub create-issue (action)', () => {
  beforeAll(async () => {
    await enable(t, KEY, 'create-issue');
  });
  const trigger = (payload: Record<string, unknown>, headers: Record<string, string> = {}) =>
    t.call({ method: 'POST', url: '/action/trigger', payload, headers });

  it('creates the issue and answers with its output', async () => {
    const [o, r] = repos[0]!.split('/');
    const res = await trigger({
      connection_id: CONN,
      provider_config_key: KEY,
      action_name: 'create-issue',
      input: { owner: o, repo: r, title: 'From Terapi', labels: ['x'] },
    });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({
      success: true,
      action_name: 'create-issue',
      error: null,
      output: { title: 'From Terapi', state: 'open', number: expect.any(Number) },
    });
    expect(gh.state.issues.some((i) => i.title === 'From Terapi')).toBe(true);
  });

  it('accepts the Nango headers instead of body fields, and /v1/actions/trigger', async () => {
    const [o, r] = repos[0]!.split('/');
    const res = await trigger(
      { action_name: 'create-issue', input: { owner: o, repo: r, title: 'Headers' } },
      { 'connection-id': CONN, 'provider-config-key': KEY },
    );
    expect(res.statusCode, res.body).toBe(200);
    const v1 = await t.call({
      method: 'POST',
      url: '/v1/actions/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, action_name: 'create-issue', input: { owner: o, repo: r, title: 'v1' } },
    });
    expect(v1.statusCode, v1.body).toBe(200);
  });

  it('validates the input before anything is queued (400 naming the field)', async () => {
    const count = gh.state.issues.length;
    const res = await trigger({
      connection_id: CONN,
      provider_config_key: KEY,
      action_name: 'create-issue',
      input: { owner: 'a', repo: 'b' },
    });
    expect(res.statusCode).toBe(400);
    expect(res.json().message).toMatch(/^input\.title/);
    expect(res.json().details[0].field).toBe('input.title');
    expect(gh.state.issues.length).toBe(count);
  });

  it('answers 424 with the upstream status and body when GitHub refuses', async () => {
    const res = await trigger({
      connection_id: CONN,
      provider_config_key: KEY,
      action_name: 'create-issue',
      input: { owner: 'nobody', repo: 'nothing', title: 'x' },
    });
    expect(res.statusCode, res.body).toBe(424);
    expect(res.json()).toMatchObject({
      error: 'provider_error',
      action_name: 'create-issue',
      upstream: { status: 404, body: expect.stringContaining('Not Found') },
    });
  });

  it('runs asynchronously with X-Async and reports through GET /action/{id}', async () => {
    const [o, r] = repos[1]!.split('/');
    const res = await trigger(
      { connection_id: CONN, provider_config_key: KEY, action_name: 'create-issue', input: { owner: o, repo: r, title: 'async one' } },
      { 'x-async': 'true' },
    );
    expect(res.statusCode, res.body).toBe(202);
    const { id, status_url } = res.json();
    expect(status_url).toBe(`http://127.0.0.1:3003/action/${id}`);
    const done = await until('the async action', async () => {
      const s = await t.call({ method: 'GET', url: `/action/${id}` });
      expect(s.statusCode).toBe(200);
      return s.json().status === 'success' && s.json();
    });
    expect(done).toMatchObject({ id, action_name: 'create-issue', success: true, error: null, output: { title: 'async one' } });
  });

  it('refuses unknown actions, actions not enabled, and unknown connections', async () => {
    expect(
      (await trigger({ connection_id: CONN, provider_config_key: KEY, action_name: 'delete-everything', input: {} })).json().error,
    ).toBe('unknown_action');
    await t.call({
      method: 'POST',
      url: '/integration',
      payload: { provider_config_key: 'gh-other', provider: 'github', oauth_client_id: 'i', oauth_client_secret: 's' },
    });
    await t.call({
      method: 'POST',
      url: '/connection',
      payload: { connection_id: CONN, provider_config_key: 'gh-other', credentials: { type: 'OAUTH2', access_token: 'x' } },
    });
    const notEnabled = await trigger({
      connection_id: CONN,
      provider_config_key: 'gh-other',
      action_name: 'create-issue',
      input: { owner: 'a', repo: 'b', title: 'c' },
    });
    expect(notEnabled.statusCode).toBe(404);
    expect(notEnabled.json().error).toBe('function_not_enabled');
    const noConn = await trigger({ connection_id: 'ghost', provider_config_key: KEY, action_name: 'create-issue', input: {} });
    expect(noConn.statusCode).toBe(404);
  });
});
