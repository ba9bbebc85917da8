import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { defineAction, defineSync } from '../../src/functions/define.js';
import { startWorkers } from '../../src/workers.js';
import { createTestApp, defaultTestConfig, type TestApp, testRedis } from '../helpers/app.js';
import { allRecords, connectFake, enable, recordsPage, syncStatus, until, waitForRun } from '../helpers/syncs.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';

let t: TestApp;
let gh: FakeGithub;
const KEY = 'gh';
const CONN = 'c1';
let explodeCalls = 0;
const config = {
  ...defaultTestConfig,
  allowProviderUrlOverrides: true,
  egress: { allowPrivateNetworks: true, allowedHosts: [], timeoutMs: 400 },
  runs: {
    syncTimeoutMs: 2500,
    actionTimeoutMs: 1500,
    actionWaitMs: 5000,
    leaseMs: 3000,
    schedulerIntervalMs: 300,
    providerRetries: 1,
    retentionDays: 30,
  },
};

/** Functions an embedding application adds next to the built-ins (here: ones that misbehave). */
const extra = {
  github: [
    defineSync({
      name: 'explode',
      description: 'throws after saving a few records',
      models: { Thing: z.object({ id: z.string() }) },
      frequency: '1m',
      syncType: 'full',
      autoStart: true,
      async exec(ctx) {
        explodeCalls++;
        await ctx.batchSave('Thing', [{ id: 'a' }, { id: 'b' }]);
        throw new Error('the function broke on purpose');
      },
    }),
    defineSync({
      name: 'bad-records',
      description: 'saves a record that does not match its model',
      models: { Thing: z.object({ id: z.string(), n: z.number() }) },
      frequency: '1h',
      syncType: 'full',
      autoStart: true,
      async exec(ctx) {
        await ctx.batchSave('Thing', [{ id: 'x', n: 'not a number' as unknown as number }]);
      },
    }),
    defineAction({
      name: 'stall',
      description: 'never returns',
      input: z.object({}),
      output: z.object({}),
      async exec() {
        return new Promise(() => {});
      },
    }),
  ],
};

const trigger = (syncs: string[], extraBody: Record<string, unknown> = {}, conn = CONN) =>
  t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: conn, provider_config_key: KEY, syncs, ...extraBody } });

beforeAll(async () => {
  gh = await startFakeGithub();
  gh.controls.seed({ repos: 1, issuesPerRepo: 30 });
  t = await createTestApp({ workers: true, extraFunctions: extra, config });
  await connectFake(t, { key: KEY, provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: CONN });
});
afterAll(async () => {
  await t?.close();
  await gh?.close();
});

describe('functions that fail', () => {
  it('a function that throws ends in error with its message, and the next scheduled run still happens', async () => {
    await enable(t, KEY, 'explode');
    const s = await waitForRun(t, KEY, CONN, 'explode');
    expect(s).toMatchObject({ status: 'error', error: 'the function broke on purpose' });
    // Full sync that failed: what it saved stays (no deletion pass), counted in the run.
    const runs = (await t.call({ method: 'GET', url: `/sync/${CONN}/explode/runs?provider_config_key=${KEY}` })).json().runs;
    expect(runs[0]).toMatchObject({ status: 'error', added: 2, error: { message: 'the function broke on purpose' } });
    const log = (await t.call({ method: 'GET', url: `/runs/${runs[0].id}/logs` })).json();
    expect(log.logs.map((l: { message: string }) => l.message).join('\n')).toMatch(/sync failed: the function broke on purpose/);
    // Move the schedule to now (as if its minute passed): the scheduler runs it again by itself.
    const calls = explodeCalls;
    await t.services.db.execute(`UPDATE syncs SET next_run_at = now() WHERE name = 'explode'`);
    await until('the next scheduled run', async () => explodeCalls > calls);
    await t.call({ method: 'DELETE', url: `/integration/${KEY}/functions/explode` });
  });

  it('a record that does not match its model fails the run, naming the field', async () => {
    await enable(t, KEY, 'bad-records');
    const s = await waitForRun(t, KEY, CONN, 'bad-records');
    expect(s.status).toBe('error');
    expect(s.error).toMatch(/Thing.*n: /);
    await t.call({ method: 'DELETE', url: `/integration/${KEY}/functions/bad-records` });
  });

  it('a provider that hangs: the call times out, the run ends in error', async () => {
    await enable(t, KEY, 'pull-requests', { auto_start: false });
    await t.call({
      method: 'POST',
      url: '/sync/start',
      payload: { provider_config_key: KEY, syncs: ['pull-requests'], connection_id: CONN },
    });
    gh.controls.hangNext(2);
    const s = await waitForRun(t, KEY, CONN, 'pull-requests');
    expect(s.status).toBe('error');
    expect(s.error).toMatch(/time/i);
  });

  it('a sync that never ends (endless pagination) is stopped at the time limit', async () => {
    const before = await syncStatus(t, KEY, CONN, 'pull-requests');
    gh.controls.infinitePagination = true;
    try {
      await trigger(['pull-requests']);
      const s = await waitForRun(t, KEY, CONN, 'pull-requests', before.last_sync_date);
      expect(s).toMatchObject({ status: 'error', error: 'run timed out after 3 s' });
    } finally {
      gh.controls.infinitePagination = false;
    }
    // The next run works again.
    await trigger(['pull-requests']);
    const ok = await until('a good run', async () => {
      const s = await syncStatus(t, KEY, CONN, 'pull-requests');
      return s.status === 'success' && s;
    });
    expect(ok.error).toBeNull();
  });
});

describe('actions that fail', () => {
  it('an action over its time limit answers 504 and its run ends in error', async () => {
    await enable(t, KEY, 'stall');
    const started = Date.now();
    const r = await t.call({
      method: 'POST',
      url: '/action/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, action_name: 'stall', input: {} },
    });
    expect(r.statusCode, r.body).toBe(504);
    expect(r.json()).toMatchObject({ error: 'action_timeout', message: 'action timed out after 2 s', action_name: 'stall' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(1400);
    const run = await t.call({ method: 'GET', url: `/action/${r.json().run_id}` });
    expect(run.json()).toMatchObject({ status: 'error', success: false, error: 'action timed out after 2 s' });
  });

  it('a provider that hangs fails the action after the egress timeout with 424, and the write is not sent again', async () => {
    await enable(t, KEY, 'create-issue');
    gh.controls.hangNext(1);
    gh.controls.clearRequests();
    const issues = gh.state.issues.length;
    const [o, r] = [...gh.state.repos.values()][0]!.full_name.split('/');
    const res = await t.call({
      method: 'POST',
      url: '/action/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, action_name: 'create-issue', input: { owner: o, repo: r, title: 't' } },
    });
    expect(res.statusCode, res.body).toBe(424);
    expect(res.json()).toMatchObject({ error: 'action_failed', message: expect.stringMatching(/time/i) });
    // The hung request may have created the issue at the provider: sending it again could create a second one.
    expect(gh.controls.requests.filter((q) => q.method === 'POST')).toHaveLength(1);
    expect(gh.state.issues.length).toBe(issues);
  });
});

describe('sync control', () => {
  it('pause stops the schedule: a paused sync never runs, and a trigger is refused', async () => {
    await enable(t, KEY, 'issues');
    const first = await waitForRun(t, KEY, CONN, 'issues');
    const paused = await t.call({ method: 'POST', url: '/sync/pause', payload: { provider_config_key: KEY, syncs: ['issues'] } });
    expect(paused.json()).toEqual({ success: true, count: 1 });
    expect((await syncStatus(t, KEY, CONN, 'issues')).status).toBe('paused');
    const refused = await trigger(['issues']);
    expect(refused.statusCode).toBe(409);
    expect(refused.json().error).toBe('sync_paused');
    await t.services.db.execute(`UPDATE syncs SET next_run_at = now() - interval '1 hour' WHERE name = 'issues'`);
    await t.workers!.tick();
    await new Promise((r) => setTimeout(r, 800));
    expect((await syncStatus(t, KEY, CONN, 'issues')).last_sync_date).toBe(first.last_sync_date);
    const started = await t.call({
      method: 'POST',
      url: '/sync/start',
      payload: { provider_config_key: KEY, syncs: ['issues'], connection_id: CONN },
    });
    expect(started.json()).toEqual({ success: true, count: 1 });
    const again = await waitForRun(t, KEY, CONN, 'issues', first.last_sync_date);
    expect(again.status).toBe('success');
  });

  it('Nango /sync/status lists the syncs of a connection or of all connections', async () => {
    const one = await t.call({ method: 'GET', url: `/sync/status?provider_config_key=${KEY}&syncs=issues&connection_id=${CONN}` });
    expect(one.statusCode, one.body).toBe(200);
    expect(one.json().syncs).toEqual([
      expect.objectContaining({
        connection_id: CONN,
        name: 'issues',
        status: 'SUCCESS',
        type: 'INCREMENTAL',
        frequency: '15m',
        recordCount: { GithubIssue: 30 },
      }),
    ]);
    const all = await t.call({ method: 'GET', url: `/sync/status?provider_config_key=${KEY}&syncs=*` });
    expect(
      all
        .json()
        .syncs.map((s: { name: string }) => s.name)
        .sort(),
    ).toEqual(['issues', 'pull-requests']);
  });

  it('frequency: per-connection override from 1 minute to 31 days, or back to the default', async () => {
    const put = (frequency: string | null) =>
      t.call({
        method: 'PUT',
        url: '/sync/update-connection-frequency',
        payload: { provider_config_key: KEY, connection_id: CONN, sync_name: 'issues', frequency },
      });
    expect((await put('2h')).json()).toEqual({ frequency: 7200 });
    expect((await t.call({ method: 'GET', url: `/sync/status?provider_config_key=${KEY}&syncs=issues` })).json().syncs[0].frequency).toBe(
      '2h',
    );
    for (const bad of ['30s', '32d', 'often', '0m']) {
      const r = await put(bad);
      expect(r.statusCode, bad).toBe(400);
      expect(r.json().message).toMatch(/^frequency: /);
    }
    expect((await put(null)).json()).toEqual({ frequency: 900 });
    // Enabling again with only the name keeps the integration's settings.
    expect((await enable(t, KEY, 'issues', { frequency: '30m' })).frequency).toBe('30m');
    expect(await enable(t, KEY, 'issues')).toMatchObject({ frequency: '30m', auto_start: true });
    expect((await put(null)).json()).toEqual({ frequency: 1800 });
    await enable(t, KEY, 'issues', { frequency: '15m' });
    const enableBad = await t.call({ method: 'POST', url: `/integration/${KEY}/functions`, payload: { name: 'issues', frequency: '10s' } });
    expect(enableBad.statusCode).toBe(400);
  });

  it('unknown functions and models are refused with the field named', async () => {
    const unknownFn = await t.call({ method: 'POST', url: `/integration/${KEY}/functions`, payload: { name: 'not-a-thing' } });
    expect(unknownFn.statusCode).toBe(400);
    expect(unknownFn.json().message).toMatch(/^name: "not-a-thing" is not a function of github/);
    const unknownSync = await trigger(['not-a-thing']);
    expect(unknownSync.statusCode).toBe(400);
    expect(unknownSync.json().message).toMatch(/^syncs: /);
    const unknownModel = await recordsPage(t, KEY, CONN, 'model=Nothing');
    expect(unknownModel.statusCode).toBe(400);
    expect(unknownModel.json().message).toMatch(/^model: /);
    const noStatus = await t.call({ method: 'GET', url: `/sync/${CONN}/create-issue?provider_config_key=${KEY}` });
    expect(noStatus.statusCode).toBe(400);
    const ghost = await trigger(['issues'], {}, 'ghost');
    expect(ghost.statusCode).toBe(404);
  });

  it('records: limit bounds, forged and foreign cursors', async () => {
    for (const limit of ['0', '1000000', '-1', 'ten']) {
      const r = await recordsPage(t, KEY, CONN, `model=GithubIssue&limit=${limit}`);
      expect(r.statusCode, limit).toBe(400);
      expect(r.json().message).toMatch(/limit/);
    }
    expect((await recordsPage(t, KEY, CONN, 'model=GithubIssue&limit=10000')).statusCode).toBe(200);
    const forged = await recordsPage(t, KEY, CONN, 'model=GithubIssue&cursor=bm90LWEtY3Vyc29y');
    expect(forged.statusCode).toBe(400);
    expect(forged.json().message).toMatch(/^cursor: /);
    // A real cursor of another model (or connection) is refused rather than misapplied.
    const { cursor } = await allRecords(t, KEY, CONN, 'GithubIssue', { limit: 5 });
    const foreign = await recordsPage(t, KEY, CONN, `model=GithubPullRequest&cursor=${cursor}`);
    expect(foreign.statusCode).toBe(400);
    expect(foreign.json().message).toMatch(/^cursor: .*for this query/);
    const missingHeader = await t.call({ method: 'GET', url: '/records?model=GithubIssue', headers: { 'connection-id': CONN } });
    expect(missingHeader.statusCode).toBe(400);
    expect(missingHeader.json().message).toMatch(/provider-config-key/);
  });

  it('deleting a connection stops its schedules and removes its records and runs', async () => {
    await connectFake(t, { key: KEY, provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: 'c2' });
    // A new connection gets the enabled auto-start syncs at once.
    const s = await waitForRun(t, KEY, 'c2', 'issues');
    expect(s.records_count).toBe(30);
    const count = async () =>
      Number(
        (
          await queryRows<{ n: string }>(
            t.services.db,
            sql`SELECT (SELECT count(*) FROM records r JOIN connections c ON c.id = r.connection_pk WHERE c.connection_id = 'c2') + (SELECT count(*) FROM syncs s JOIN connections c ON c.id = s.connection_pk WHERE c.connection_id = 'c2') AS n`,
          )
        )[0]!.n,
      );
    expect(await count()).toBeGreaterThan(30);
    const del = await t.call({ method: 'DELETE', url: `/connection/c2?provider_config_key=${KEY}` });
    expect(del.statusCode).toBe(204);
    expect(await count()).toBe(0);
    expect((await trigger(['issues'], {}, 'c2')).statusCode).toBe(404);
    expect((await recordsPage(t, KEY, 'c2', 'model=GithubIssue')).statusCode).toBe(404);
  });

  it('disabling a sync stops it and removes its records', async () => {
    const r = await t.call({ method: 'DELETE', url: `/integration/${KEY}/functions/pull-requests` });
    expect(r.statusCode).toBe(204);
    const list = (await t.call({ method: 'GET', url: `/integration/${KEY}/functions` })).json().functions;
    expect(list.find((f: { name: string }) => f.name === 'pull-requests').enabled).toBe(false);
    expect((await t.call({ method: 'GET', url: `/sync/${CONN}/pull-requests?provider_config_key=${KEY}` })).statusCode).toBe(404);
    expect((await t.call({ method: 'DELETE', url: `/integration/${KEY}/functions/pull-requests` })).statusCode).toBe(404);
  });
});

describe('housekeeping', () => {
  it('deletes finished runs (with their logs) and delivered events past the retention, nothing newer', async () => {
    const q = (text: string) => queryRows<Record<string, string>>(t.services.db, sql.raw(text));
    const [{ n: runsBefore }] = (await q(`SELECT count(*)::int AS n FROM runs`)) as [{ n: string }];
    expect(Number(runsBefore)).toBeGreaterThan(3);
    await q(
      `UPDATE runs SET created_at = now() - interval '40 days' WHERE id IN (SELECT id FROM runs WHERE status IN ('success','error') ORDER BY created_at LIMIT 2)`,
    );
    await q(
      `UPDATE events SET created_at = now() - interval '40 days', delivered_at = now() WHERE id IN (SELECT id FROM events ORDER BY id LIMIT 1)`,
    );
    const removed = await t.workers!.housekeeping();
    expect(removed).toEqual({ runs: 2, events: 1 });
    expect(Number(((await q(`SELECT count(*)::int AS n FROM runs`)) as [{ n: string }])[0].n)).toBe(Number(runsBefore) - 2);
    expect(await q(`SELECT 1 FROM run_logs l LEFT JOIN runs r ON r.id = l.run_id WHERE r.id IS NULL`)).toEqual([]);
    expect(await t.workers!.housekeeping()).toEqual({ runs: 0, events: 0 });
  });
});

describe('worker shutdown', () => {
  it('a worker stopping mid-run hands the sync back; the next worker resumes it as its next attempt', async () => {
    const KEY3 = 'gh-handback';
    const slow = await startFakeGithub({ delayMs: 30 });
    try {
      slow.controls.seed({ repos: 2, issuesPerRepo: 300 });
      await connectFake(t, { key: KEY3, provider: 'github', baseUrl: slow.url, token: slow.token, connectionId: CONN });
      // This file's workers stop for good (this test is the file's last); two generations replace them.
      await t.workers!.stop();
      const slowConfig = { ...config, runs: { ...config.runs, syncTimeoutMs: 30_000 } };
      const workers = await startWorkers({ services: t.services, config: slowConfig, redis: await testRedis(), log: t.app.log as never });
      await enable(t, KEY3, 'issues');
      await until('the run to save records', async () => (await syncStatus(t, KEY3, CONN, 'issues')).records_count > 0);
      const stopped = Date.now();
      await workers.stop();
      // Well under the run's 30 s limit: stopping hands the run back instead of waiting it out.
      expect(Date.now() - stopped).toBeLessThan(15_000);
      expect((await syncStatus(t, KEY3, CONN, 'issues')).status).toBe('running');
      slow.controls.delayMs = 0;
      const next = await startWorkers({ services: t.services, config: slowConfig, redis: await testRedis(), log: t.app.log as never });
      try {
        const s = await waitForRun(t, KEY3, CONN, 'issues');
        expect(s).toMatchObject({ status: 'success', records_count: 600 });
        const runs = (await t.call({ method: 'GET', url: `/sync/${CONN}/issues/runs?provider_config_key=${KEY3}` })).json().runs;
        expect(runs).toHaveLength(1);
        expect(runs[0]).toMatchObject({ status: 'success', attempt: 2, added: 600 });
      } finally {
        await next.stop();
      }
    } finally {
      await slow.close();
    }
  });
});
