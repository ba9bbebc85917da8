/**
 * Nango's Node SDK against Terapi: records, sync control and actions, with the built-in GitHub functions running
 * against the fake GitHub API. (The SDK's proxy methods are not covered: Terapi has no `/proxy` yet.)
 */
import type { Nango } from '@nangohq/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { connectFake, enable, syncStatus, until, waitForRun } from '../helpers/syncs.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';
import { failure, sdkFor } from './sdk.js';

let t: TestApp;
let gh: FakeGithub;
let nango: Nango;
let owner: string;
let repo: string;
const KEY = 'gh';
const CONN = 'octo';

type Status = {
  id: string;
  name: string;
  status: string;
  frequency: string;
  recordCount: Record<string, number>;
  nextScheduledSyncAt: string | null;
};
const statusOf = async () => ((await nango.syncStatus(KEY, ['issues'], CONN)) as { syncs: Status[] }).syncs[0]!;

/** Runs `trigger` and waits for the run it caused; true when that run asked GitHub for everything (no `since`). */
async function runFrom(trigger: () => Promise<unknown>): Promise<{ fullResync: boolean }> {
  const before = await syncStatus(t, KEY, CONN, 'issues');
  gh.controls.clearRequests();
  await trigger();
  const done = await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
  expect(done.status).toBe('success');
  const issueRequests = gh.controls.requests.filter((r) => /\/issues$/.test(r.path));
  expect(issueRequests.length).toBeGreaterThan(0);
  return { fullResync: issueRequests.every((r) => !r.query.since) };
}

beforeAll(async () => {
  gh = await startFakeGithub();
  [owner, repo] = gh.controls.seed({ repos: 1, issuesPerRepo: 5 })[0]!.split('/') as [string, string];
  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true } });
  await connectFake(t, { key: KEY, provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: CONN });
  await enable(t, KEY, 'issues', { frequency: '1h' });
  await enable(t, KEY, 'create-issue');
  await waitForRun(t, KEY, CONN, 'issues');
  nango = await sdkFor(t);
});
afterAll(async () => {
  await t?.close();
  await gh?.close();
});

describe('records', () => {
  it('listRecords pages with the cursor and narrows by filter, modifiedAfter and ids', async () => {
    const first = await nango.listRecords({ providerConfigKey: KEY, connectionId: CONN, model: 'GithubIssue', limit: 2 });
    expect(first.records).toHaveLength(2);
    expect(first.next_cursor).toEqual(expect.any(String));
    const seen = first.records.map((r) => String(r.id));
    let cursor = first.next_cursor;
    while (cursor) {
      const page = await nango.listRecords({ providerConfigKey: KEY, connectionId: CONN, model: 'GithubIssue', limit: 2, cursor });
      seen.push(...page.records.map((r) => String(r.id)));
      cursor = page.next_cursor;
    }
    expect(new Set(seen).size).toBe(5);
    expect(seen).toHaveLength(5);

    const added = await nango.listRecords({
      providerConfigKey: KEY,
      connectionId: CONN,
      model: 'GithubIssue',
      filter: 'added',
      modifiedAfter: '2020-01-01T00:00:00Z',
    });
    expect(added.records).toHaveLength(5);
    expect(added.records.every((r) => r._nango_metadata.last_action === 'ADDED')).toBe(true);
    const deleted = await nango.listRecords({ providerConfigKey: KEY, connectionId: CONN, model: 'GithubIssue', filter: 'deleted' });
    expect(deleted.records).toEqual([]);
    const two = await nango.listRecords({ providerConfigKey: KEY, connectionId: CONN, model: 'GithubIssue', ids: seen.slice(0, 2) });
    expect(two.records.map((r) => r.id).sort()).toEqual(seen.slice(0, 2).sort());
  });

  it('a bad listRecords query answers 400 naming the parameter', async () => {
    const r = await failure(nango.listRecords({ providerConfigKey: KEY, connectionId: CONN, model: 'not a model' }));
    expect(r.status).toBe(400);
    expect(r.body.details?.[0]?.field).toBe('model');
  });
});

describe('sync control', () => {
  it('syncStatus for named syncs and for all (*)', async () => {
    expect(await statusOf()).toMatchObject({ name: 'issues', status: 'SUCCESS', frequency: '1h', recordCount: { GithubIssue: 5 } });
    const all = (await nango.syncStatus(KEY, '*')) as { syncs: Status[] };
    expect(all.syncs.map((s) => s.name)).toEqual(['issues']);
    // Nango's id is a string; ours is opaque and stable (not the server-wide syncs row number).
    expect(all.syncs[0]!.id).toMatch(/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]{22}$/);
    expect(await statusOf()).toMatchObject({ id: all.syncs[0]!.id });
  });

  it('triggerSync runs incrementally; a reset (opts.reset, or the legacy full-resync flag) runs a full resync', async () => {
    expect(await runFrom(() => nango.triggerSync(KEY, ['issues'], CONN))).toEqual({ fullResync: false });
    expect(await runFrom(() => nango.triggerSync(KEY, ['issues'], CONN, { reset: true }))).toEqual({ fullResync: true });
    expect(await runFrom(() => nango.triggerSync(KEY, ['issues'], CONN, true))).toEqual({ fullResync: true });
    expect(await runFrom(() => nango.triggerSync(KEY, ['issues'], CONN, { reset: false }))).toEqual({ fullResync: false });
  });

  it('triggerSync of a sync the integration does not have answers 400 naming it', async () => {
    const r = await failure(nango.triggerSync(KEY, ['no-such-sync'], CONN));
    expect(r.status).toBe(400);
    expect(r.body.message).toContain('no-such-sync');
  });

  it('pauseSync and startSync', async () => {
    await nango.pauseSync(KEY, ['issues'], CONN);
    expect(await statusOf()).toMatchObject({ status: 'PAUSED', nextScheduledSyncAt: null });
    await nango.startSync(KEY, ['issues']);
    await until('the sync to be scheduled again', async () => {
      const s = await statusOf();
      return s.status !== 'PAUSED' && s.nextScheduledSyncAt !== null;
    });
  });

  it("updateSyncConnectionFrequency sets and clears the connection's frequency", async () => {
    expect(await nango.updateSyncConnectionFrequency(KEY, 'issues', CONN, '2h')).toEqual({ frequency: 7200 });
    expect((await statusOf()).frequency).toBe('2h');
    expect(await nango.updateSyncConnectionFrequency(KEY, 'issues', CONN, null)).toEqual({ frequency: 3600 });
    expect((await statusOf()).frequency).toBe('1h');
    const bad = await failure(nango.updateSyncConnectionFrequency(KEY, 'issues', CONN, 'often'));
    expect(bad.status).toBe(400);
    expect(bad.body.message).toMatch(/frequency/);
  });
});

describe('actions', () => {
  it('triggerAction runs the action (the answer is the seed 001 ActionResponse, the output under `output`)', async () => {
    const res = await nango.triggerAction<{ owner: string; repo: string; title: string }, { success: boolean; output: { title: string } }>(
      KEY,
      CONN,
      'create-issue',
      { owner, repo, title: 'From the SDK' },
    );
    expect(res).toMatchObject({
      success: true,
      action_name: 'create-issue',
      error: null,
      output: { title: 'From the SDK', number: expect.any(Number) },
    });
    expect(gh.state.issues.filter((i) => i.title === 'From the SDK')).toHaveLength(1);
  });

  it('triggerAction with bad input answers 400 naming the field, and creates nothing', async () => {
    const count = gh.state.issues.length;
    const r = await failure(nango.triggerAction(KEY, CONN, 'create-issue', { owner, repo }));
    expect(r.status).toBe(400);
    expect(r.body.details?.[0]?.field).toBe('input.title');
    expect(gh.state.issues.length).toBe(count);
  });

  it('triggerActionAsync, then getAsyncActionResult by its statusUrl and by its id', async () => {
    const pending = await nango.triggerActionAsync(KEY, CONN, 'create-issue', { owner, repo, title: 'Async from the SDK' });
    expect(pending).toMatchObject({ id: expect.any(String), statusUrl: `/action/${pending.id}` });
    const done = await until('the async action', async () => {
      const r = await nango.getAsyncActionResult<{ status: string; output: { title: string } }>({ statusUrl: pending.statusUrl });
      return r.status === 'success' || r.status === 'error' ? r : undefined;
    });
    expect(done).toMatchObject({ status: 'success', output: { title: 'Async from the SDK' } });
    expect(await nango.getAsyncActionResult({ id: pending.id })).toMatchObject({ id: pending.id, status: 'success' });
  });
});
