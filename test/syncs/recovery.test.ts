import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createVault, generateKeySpec, parseEncryptionKeys } from '../../src/lib/vault.js';
import { createRedis } from '../../src/queue/redis.js';
import { createTestApp, createTestDatabase, defaultTestConfig, type TestApp, type TestDatabase, testRedis, usingPostgres } from '../helpers/app.js';
import { allRecords, connectFake, enable, syncStatus, until, waitForRun } from '../helpers/syncs.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';

/** Deletes every key of one queue prefix: what a Redis restart without persistence does to Terapi's queues. */
async function loseRedisData(prefix: string) {
  const redis: Redis = createRedis(await testRedis());
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    if (keys.length) await redis.del(...keys);
    cursor = next;
  } while (cursor !== '0');
  redis.disconnect();
}

describe('Redis loses its data while syncs are queued', () => {
  let t: TestApp;
  let gh: FakeGithub;
  beforeAll(async () => {
    gh = await startFakeGithub();
    gh.controls.seed({ repos: 1, issuesPerRepo: 20 });
    t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true, queues: { ...defaultTestConfig.queues, prefix: `terapi-redis-loss-${process.pid}` } } });
    await connectFake(t, { key: 'gh', provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: 'c' });
  });
  afterAll(async () => {
    await t?.close();
    await gh?.close();
  });

  it('schedules are re-derived from Postgres: the queued runs still happen', async () => {
    await enable(t, 'gh', 'issues');
    const first = await waitForRun(t, 'gh', 'c', 'issues');
    // Workers stop, a trigger queues a run, then Redis forgets everything (jobs, the scheduler tick).
    await t.workers!.stop();
    gh.controls.addIssue([...gh.state.repos.values()][0]!.full_name, { title: 'while redis was down' });
    expect((await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: 'c', provider_config_key: 'gh', syncs: ['issues'] } })).statusCode).toBe(200);
    await loseRedisData(`terapi-redis-loss-${process.pid}`);
    const { startWorkers } = await import('../../src/workers.js');
    const workers = await startWorkers({ services: t.services, config: { ...defaultTestConfig, queues: { ...defaultTestConfig.queues, prefix: `terapi-redis-loss-${process.pid}` } }, redis: await testRedis(), log: t.app.log as never });
    try {
      const after = await waitForRun(t, 'gh', 'c', 'issues', first.last_sync_date);
      expect(after).toMatchObject({ status: 'success', records_count: 21 });
      // And with the workers running, losing Redis again does not stop the schedule for long.
      await loseRedisData(`terapi-redis-loss-${process.pid}`);
      gh.controls.addIssue([...gh.state.repos.values()][0]!.full_name, { title: 'second loss' });
      await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: 'c', provider_config_key: 'gh', syncs: ['issues'] } });
      const again = await waitForRun(t, 'gh', 'c', 'issues', after.last_sync_date);
      expect(again.records_count).toBe(22);
    } finally {
      await workers.stop();
    }
  });
});

/** `terapi worker` as a real process (what SIGKILL is tried on). */
function terapiWorker(env: Record<string, string>) {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'worker'], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (d: Buffer) => (output += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (output += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, exited, output: () => output };
}

// Several processes on one database need PostgreSQL; the workers reach Redis by URL.
describe.skipIf(!usingPostgres || !process.env.REDIS_URL)('a worker killed with SIGKILL in the middle of a run', () => {
  let db: TestDatabase;
  let t: TestApp;
  let gh: FakeGithub;
  const spec = generateKeySpec();
  const prefix = `terapi-sigkill-${process.pid}`;
  const workers: ReturnType<typeof terapiWorker>[] = [];
  const env = () => ({
    DATABASE_URL: db.url!,
    REDIS_URL: process.env.REDIS_URL!,
    TERAPI_ENCRYPTION_KEY: spec,
    TERAPI_QUEUE_PREFIX: prefix,
    TERAPI_RUN_LEASE_SECONDS: '3',
    TERAPI_SCHEDULER_INTERVAL_SECONDS: '1',
    TERAPI_EGRESS_ALLOW_PRIVATE: 'true',
    TERAPI_REFRESH_INTERVAL_SECONDS: '0',
  });

  beforeAll(async () => {
    db = await createTestDatabase();
    gh = await startFakeGithub();
    gh.controls.seed({ repos: 3, issuesPerRepo: 400 });
    // The API side in this process (no workers here): the killed and the rescuing workers are real processes.
    t = await createTestApp({ db, vault: createVault(parseEncryptionKeys(spec)), config: { allowProviderUrlOverrides: true, queues: { ...defaultTestConfig.queues, prefix } } });
    await connectFake(t, { key: 'gh', provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: 'victim' });
  }, 60_000);
  afterEach(async () => {
    for (const w of workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  });
  afterAll(async () => {
    await t?.close();
    await gh?.close();
    await db?.drop();
  });

  it('the run is resumed by another worker and the final records are exactly right', async () => {
    gh.controls.delayMs = 25;
    const first = terapiWorker(env());
    workers.push(first);
    await enable(t, 'gh', 'issues');
    // Wait until the run is well under way, then kill the worker without warning.
    await until('records being written', async () => (await syncStatus(t, 'gh', 'victim', 'issues')).records_count >= 300, 60_000);
    first.child.kill('SIGKILL');
    expect(await first.exited).toBeNull();
    const mid = await syncStatus(t, 'gh', 'victim', 'issues');
    expect(mid.status).toBe('running');
    expect(mid.records_count).toBeLessThan(1200);

    // Upstream changes while nobody runs the sync.
    const repo = [...gh.state.repos.values()][0]!.full_name;
    gh.controls.updateIssue(repo, 1, { title: 'changed while the worker was dead' });
    gh.controls.addIssue(repo, { title: 'opened while the worker was dead' });
    gh.controls.delayMs = 0;

    const second = terapiWorker(env());
    workers.push(second);
    const done = await waitForRun(t, 'gh', 'victim', 'issues', null, 60_000);
    expect(done.status, second.output()).toBe('success');

    // Exactly the provider's issues: none missing, none doubled, the changed title current.
    const { records } = await allRecords(t, 'gh', 'victim', 'GithubIssue', { limit: 1000 });
    const live = records.filter((r) => !r._nango_metadata.deleted_at);
    const expected = gh.state.issues.filter((i) => !i.pull && !i.deleted);
    expect(new Set(live.map((r) => r.id)).size).toBe(live.length);
    expect(live.map((r) => r.id).sort()).toEqual(expected.map((i) => String(i.id)).sort());
    expect(live.find((r) => r.title === 'changed while the worker was dead')).toBeDefined();

    const runs = (await t.call({ method: 'GET', url: '/sync/victim/issues/runs?provider_config_key=gh' })).json().runs;
    expect(runs).toHaveLength(1);
    expect(runs[0]).toMatchObject({ status: 'success', attempt: 2 });
    // Each issue counted once across both attempts (re-saving what attempt 1 wrote changes nothing);
    // the renamed one is an update if attempt 1 had stored it already.
    expect(runs[0].added).toBe(expected.length);
    expect(runs[0].updated).toBeLessThanOrEqual(1);
    expect(live.find((r) => r.title === 'opened while the worker was dead')).toBeDefined();
    const log = (await t.call({ method: 'GET', url: `/runs/${runs[0].id}/logs` })).json().logs.map((l: { message: string }) => l.message);
    expect(log.join('\n')).toMatch(/resumed: attempt 1 stopped without finishing/);

    second.child.kill('SIGTERM');
    expect(await second.exited).toBe(0);
  }, 120_000);
});
