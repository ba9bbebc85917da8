import { type ChildProcess, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createVault, generateKeySpec, parseEncryptionKeys } from '../../src/lib/vault.js';
import { createRedis } from '../../src/queue/redis.js';
import { startWorkers } from '../../src/workers.js';
import {
  createTestApp,
  createTestDatabase,
  defaultTestConfig,
  type TestApp,
  type TestDatabase,
  testRedis,
  usingPostgres,
} from '../helpers/app.js';
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

const PREFIX = `terapi-redis-loss-${process.pid}`;
const config = {
  ...defaultTestConfig,
  queues: { ...defaultTestConfig.queues, prefix: PREFIX },
  webhooks: { maxAttempts: 5, backoffMs: 10_000 },
};

describe('Redis loses its data while syncs are queued', () => {
  let t: TestApp;
  let gh: FakeGithub;
  beforeAll(async () => {
    gh = await startFakeGithub();
    gh.controls.seed({ repos: 1, issuesPerRepo: 20 });
    // Webhook retries 10 s apart: a delivery whose retry job Redis lost is delivered only if it is re-queued.
    t = await createTestApp({ workers: true, config: { ...config, allowProviderUrlOverrides: true } });
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
    expect(
      (
        await t.call({
          method: 'POST',
          url: '/sync/trigger',
          payload: { connection_id: 'c', provider_config_key: 'gh', syncs: ['issues'] },
        })
      ).statusCode,
    ).toBe(200);
    await loseRedisData(PREFIX);
    const workers = await startWorkers({ services: t.services, config, redis: await testRedis(), log: t.app.log as never });
    try {
      const after = await waitForRun(t, 'gh', 'c', 'issues', first.last_sync_date);
      expect(after).toMatchObject({ status: 'success', records_count: 21 });
      // And with the workers running, losing Redis again does not stop the schedule for long.
      await loseRedisData(PREFIX);
      gh.controls.addIssue([...gh.state.repos.values()][0]!.full_name, { title: 'second loss' });
      await t.call({ method: 'POST', url: '/sync/trigger', payload: { connection_id: 'c', provider_config_key: 'gh', syncs: ['issues'] } });
      const again = await waitForRun(t, 'gh', 'c', 'issues', after.last_sync_date);
      expect(again.records_count).toBe(22);
    } finally {
      await workers.stop();
    }
  });

  it('queued actions and webhook deliveries whose jobs were lost are queued again from Postgres', async () => {
    let down = true;
    const received: string[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        if (down) return res.writeHead(503).end();
        received.push(JSON.parse(body).type);
        res.writeHead(200).end();
      });
    });
    await new Promise<void>((r) => receiver.listen(0, '127.0.0.1', r));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hooks`;
      expect((await t.call({ method: 'PUT', url: '/environment/webhooks', payload: { urls: [url] } })).statusCode).toBe(200);
      await enable(t, 'gh', 'create-issue');
      // No worker runs: the action's job waits in Redis, and Redis then loses it.
      await t.workers!.stop();
      const [owner, repo] = [...gh.state.repos.values()][0]!.full_name.split('/');
      const queued = await t.call({
        method: 'POST',
        url: '/action/trigger',
        headers: { 'x-async': 'true' },
        payload: { connection_id: 'c', provider_config_key: 'gh', action_name: 'create-issue', input: { owner, repo, title: 'lost job' } },
      });
      expect(queued.statusCode, queued.body).toBe(202);
      await loseRedisData(PREFIX);
      const workers = await startWorkers({ services: t.services, config, redis: await testRedis(), log: t.app.log as never });
      try {
        const done = await until('the re-queued action', async () => {
          const r = (await t.call({ method: 'GET', url: `/action/${queued.json().id}` })).json();
          return r.status === 'success' && r;
        });
        expect(done.output).toMatchObject({ title: 'lost job' });
        // Its async_action event fails its first delivery (receiver down); the retry, 10 s away, is lost with Redis.
        const pending = await until('a failed first attempt', async () => {
          const d = (await t.call({ method: 'GET', url: '/environment/webhooks/deliveries?status=pending' })).json().deliveries;
          return d.find((x: { type: string; attempts: number }) => x.type === 'async_action' && x.attempts === 1);
        });
        await loseRedisData(PREFIX);
        down = false;
        await until('the re-queued delivery', async () => {
          const d = (await t.call({ method: 'GET', url: '/environment/webhooks/deliveries' })).json().deliveries;
          return d.find((x: { id: string; status: string }) => x.id === pending.id && x.status === 'delivered');
        });
        expect(received).toContain('async_action');
      } finally {
        await workers.stop();
      }
    } finally {
      await new Promise((r) => receiver.close(r));
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
    t = await createTestApp({
      db,
      vault: createVault(parseEncryptionKeys(spec)),
      config: { allowProviderUrlOverrides: true, queues: { ...defaultTestConfig.queues, prefix } },
    });
    await connectFake(t, { key: 'gh', provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: 'victim' });
  });
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
    await until('records being written', async () => (await syncStatus(t, 'gh', 'victim', 'issues')).records_count >= 300);
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
    const done = await waitForRun(t, 'gh', 'victim', 'issues', null);
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
  });
});
