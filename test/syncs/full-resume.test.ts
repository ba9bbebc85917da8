import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { startWorkers, type Workers } from '../../src/workers.js';
import { createTestApp, defaultTestConfig, type TestApp, testRedis } from '../helpers/app.js';
import { allRecords, connectFake, enable, syncStatus, until, waitForRun } from '../helpers/syncs.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';

/**
 * A full sync detects deletions from the ids it saw, staged in the database as its batches are
 * written. A run handed back by a stopping worker and resumed by another fetches everything again:
 * what goes upstream between the two attempts is deleted too, and the staged ids go with the run.
 */
let t: TestApp;
let gh: FakeGithub;
let workers: Workers | undefined;
const KEY = 'gh-full';
const CONN = 'c1';
const config = {
  ...defaultTestConfig,
  allowProviderUrlOverrides: true,
  runs: { ...defaultTestConfig.runs, leaseMs: 3000, schedulerIntervalMs: 300, syncTimeoutMs: 60_000 },
};
const start = async () =>
  (workers = await startWorkers({ services: t.services, config, redis: await testRedis(), log: t.app.log as never }));
const staged = async () => queryRows<{ external_id: string }>(t.services.db, sql`SELECT external_id FROM sync_seen_ids`);

beforeAll(async () => {
  t = await createTestApp({ config });
  gh = await startFakeGithub();
  gh.controls.seed({ repos: 2, issuesPerRepo: 250 });
  await connectFake(t, { key: KEY, provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: CONN });
  await start();
});
afterAll(async () => {
  await workers?.stop();
  await t?.close();
  await gh?.close();
});

describe('deletion detection of a full sync resumed by another worker', () => {
  it('deletes what went upstream before and between the attempts, and nothing else', async () => {
    await enable(t, KEY, 'issues');
    const first = await waitForRun(t, KEY, CONN, 'issues');
    expect(first.status).toBe('success');
    const live = () => gh.state.issues.filter((i) => !i.pull && !i.deleted);
    expect(first.records_count).toBe(live().length);

    const [repo] = [...gh.state.repos.keys()].map((k) => gh.state.repos.get(k)!.full_name);
    const before = live().find((i) => i.repo === repo && i.number > 100)!;
    gh.controls.deleteIssue(repo!, before.number);
    gh.controls.delayMs = 40;
    const tr = await t.call({
      method: 'POST',
      url: '/sync/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'], reset: true },
    });
    expect(tr.statusCode).toBe(200);
    // Unchanged records are not rewritten: that the run saw them is only in the staged ids.
    const seenByFirstAttempt = await until('ids staged by the first attempt', async () => {
      const rows = await staged();
      return rows.length > 0 && rows;
    });
    await workers!.stop();
    workers = undefined;
    expect((await syncStatus(t, KEY, CONN, 'issues')).status).toBe('running');

    // Gone upstream after the first attempt saw it: the resumed run must not count it as seen.
    const between = live().find((i) => i.id === Number(seenByFirstAttempt[0]!.external_id))!;
    gh.controls.deleteIssue(between.repo, between.number);
    gh.controls.delayMs = 0;
    await start();
    const done = await waitForRun(t, KEY, CONN, 'issues', first.last_sync_date);
    expect(done.status).toBe('success');

    const runs = (await t.call({ method: 'GET', url: `/sync/${CONN}/issues/runs?provider_config_key=${KEY}` })).json().runs;
    expect(runs[0]).toMatchObject({ status: 'success', attempt: 2, added: 0, updated: 0, deleted: 2 });
    const { records } = await allRecords(t, KEY, CONN, 'GithubIssue');
    const deleted = records.filter((r) => r._nango_metadata.deleted_at).map((r) => r.id);
    expect(deleted.sort()).toEqual([String(before.id), String(between.id)].sort());
    const stillLive = records.filter((r) => !r._nango_metadata.deleted_at).map((r) => r.id);
    expect(stillLive.sort()).toEqual(
      live()
        .map((i) => String(i.id))
        .sort(),
    );
    expect(await staged()).toEqual([]);
  });
});
