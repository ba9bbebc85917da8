import { promises as dns } from 'node:dns';
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { defineAction } from '../../src/functions/define.js';
import type { HostLookup } from '../../src/lib/egress.js';
import { createTestApp, defaultTestConfig, type TestApp } from '../helpers/app.js';
import { connectFake, enable, waitForRun } from '../helpers/syncs.js';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';

/**
 * Which provider calls are sent again, and what the run log says about it. A write (POST) is sent
 * again only when it provably never reached the provider, or when it carries an idempotency key.
 */

let t: TestApp;
let gh: FakeGithub;
let owner: string;
let repo: string;
const KEY = 'gh';
const CONN = 'c1';

/**
 * DNS for this file, answered without asking the network: `.invalid` names do not exist (as
 * RFC 6761 promises), and `down-once.test` first points at an address where nothing listens
 * (127.0.0.2: connection refused), then at the fake on 127.0.0.1.
 */
let downOnceLookups = 0;
const lookup: HostLookup = async (hostname, options) => {
  if (hostname.endsWith('.invalid')) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND', hostname });
  if (hostname === 'down-once.test') return [{ address: downOnceLookups++ === 0 ? '127.0.0.2' : '127.0.0.1', family: 4 }];
  return dns.lookup(hostname, { all: true, family: options.family });
};

const config = {
  allowProviderUrlOverrides: true,
  egress: { ...defaultTestConfig.egress, timeoutMs: 400, lookup },
  runs: { ...defaultTestConfig.runs, providerRetries: 3 },
};

const keyed = defineAction({
  name: 'create-issue-keyed',
  description: 'creates an issue with an idempotency key, so it may be sent again after a 5xx',
  input: z.object({ owner: z.string(), repo: z.string(), title: z.string(), key: z.string() }),
  output: z.object({ number: z.number() }),
  async exec(ctx, input) {
    const { data } = await ctx.http.request<{ number: number }>({
      method: 'POST',
      path: `/repos/${input.owner}/${input.repo}/issues`,
      body: { title: input.title },
      idempotencyKey: input.key,
    });
    return { number: data.number };
  },
});

const createIssue = (title: string, key = KEY) =>
  t.call({
    method: 'POST',
    url: '/action/trigger',
    payload: { connection_id: CONN, provider_config_key: key, action_name: 'create-issue', input: { owner, repo, title } },
  });
const posts = () => gh.controls.requests.filter((r) => r.method === 'POST');
const issuesTitled = (title: string) => gh.state.issues.filter((i) => i.title === title);

/** The log lines of the newest run of `fn` (actions answer without their run id when they succeed). */
async function runLog(fn: string): Promise<string[]> {
  const [run] = await queryRows<{ id: string }>(
    t.db.database.db,
    sql`SELECT id FROM runs WHERE function_name = ${fn} ORDER BY created_at DESC LIMIT 1`,
  );
  const r = await t.call({ method: 'GET', url: `/runs/${run!.id}/logs` });
  expect(r.statusCode, r.body).toBe(200);
  return r.json().logs.map((l: { message: string }) => l.message);
}
const retryLines = (lines: string[]) => lines.filter((m) => / retrying in /.test(m));

beforeAll(async () => {
  gh = await startFakeGithub();
  [owner, repo] = gh.controls.seed({ repos: 1, issuesPerRepo: 3 })[0]!.split('/') as [string, string];
  t = await createTestApp({ workers: true, config, extraFunctions: { github: [keyed] } });
  await connectFake(t, { key: KEY, provider: 'github', baseUrl: gh.url, token: gh.token, connectionId: CONN });
  await enable(t, KEY, 'create-issue');
  await enable(t, KEY, 'create-issue-keyed');
});
afterAll(async () => {
  await t?.close();
  await gh?.close();
});
beforeEach(() => gh.controls.clearRequests());

describe('a write (POST) is never sent twice when it may have been carried out', () => {
  it('after a 5xx: one request, the 5xx is the answer', async () => {
    gh.controls.failNext(1, 502);
    const r = await createIssue('after a 502');
    expect(r.statusCode, r.body).toBe(424);
    expect(r.json()).toMatchObject({ error: 'provider_error', upstream: { status: 502 } });
    expect(posts()).toHaveLength(1);
    expect(retryLines(await runLog('create-issue'))).toEqual([]);
  });

  it('after a timeout: one request, the action fails with the timeout', async () => {
    gh.controls.hangNext(1);
    const r = await createIssue('after a timeout');
    expect(r.statusCode, r.body).toBe(424);
    expect(r.json()).toMatchObject({ error: 'action_failed', message: expect.stringMatching(/timed out after 400 ms/) });
    expect(posts()).toHaveLength(1);
  });

  it('after connection refused it is sent again (nothing reached the provider), and creates one issue', async () => {
    await connectFake(t, {
      key: 'gh-down',
      provider: 'github',
      baseUrl: `http://down-once.test:${new URL(gh.url).port}`,
      token: gh.token,
      connectionId: CONN,
    });
    await enable(t, 'gh-down', 'create-issue');
    downOnceLookups = 0;
    const r = await createIssue('after connection refused', 'gh-down');
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ success: true, output: { title: 'after connection refused' } });
    expect(posts()).toHaveLength(1);
    expect(issuesTitled('after connection refused')).toHaveLength(1);
    const lines = retryLines(await runLog('create-issue'));
    expect(lines).toEqual([
      expect.stringMatching(
        /^POST http:\/\/down-once\.test:\d+\/repos\/.+\/issues failed \(ECONNREFUSED\): retrying in \d+\.\d s \(attempt 2 of 4\)$/,
      ),
    ]);
  });

  it('after a 429 it is sent again (the provider refused before doing anything), and creates one issue', async () => {
    gh.controls.rateLimitNext(1, { kind: 'secondary', retryAfterSeconds: 1 });
    const r = await createIssue('after a 429');
    expect(r.statusCode, r.body).toBe(200);
    expect(posts().map((p) => p.status)).toEqual([429, 201]);
    expect(issuesTitled('after a 429')).toHaveLength(1);
    expect(retryLines(await runLog('create-issue'))).toEqual([
      expect.stringMatching(/answered 429: retrying in 1\.0 s \(attempt 2 of 4\)$/),
    ]);
  });

  it('with an idempotency key it is sent again after a 5xx, carrying the same key', async () => {
    gh.controls.failNext(1, 503);
    const r = await t.call({
      method: 'POST',
      url: '/action/trigger',
      payload: {
        connection_id: CONN,
        provider_config_key: KEY,
        action_name: 'create-issue-keyed',
        input: { owner, repo, title: 'keyed', key: 'issue-key-1' },
      },
    });
    expect(r.statusCode, r.body).toBe(200);
    expect(posts().map((p) => [p.status, p.headers['idempotency-key']])).toEqual([
      [503, 'issue-key-1'],
      [201, 'issue-key-1'],
    ]);
    expect(issuesTitled('keyed')).toHaveLength(1);
    expect(retryLines(await runLog('create-issue-keyed'))).toEqual([expect.stringMatching(/answered 503: retrying in/)]);
  });
});

describe('a provider host that does not exist', () => {
  it('fails the action at once with 424 naming the host, without retries', async () => {
    await connectFake(t, { key: 'gh-nx', provider: 'github', baseUrl: 'https://nonexistent.invalid', token: gh.token, connectionId: CONN });
    await enable(t, 'gh-nx', 'create-issue');
    const started = Date.now();
    const r = await createIssue('nowhere', 'gh-nx');
    expect(Date.now() - started).toBeLessThan(3000);
    expect(r.statusCode, r.body).toBe(424);
    expect(r.json()).toMatchObject({
      error: 'action_failed',
      message: 'the host nonexistent.invalid does not exist (DNS has no such name)',
    });
    expect(retryLines(await runLog('create-issue'))).toEqual([]);
  });

  it('fails a sync at once with the same reason', async () => {
    const started = Date.now();
    await enable(t, 'gh-nx', 'issues');
    const s = await waitForRun(t, 'gh-nx', CONN, 'issues');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(s).toMatchObject({ status: 'error', error: 'the host nonexistent.invalid does not exist (DNS has no such name)' });
    expect(retryLines(await runLog('issues'))).toEqual([]);
  });
});

describe('retries in the run log', () => {
  it('a sync whose provider answers 503 twice then 200 succeeds, with one log line per retry', async () => {
    gh.controls.failNext(2, 503);
    await enable(t, KEY, 'issues');
    const s = await waitForRun(t, KEY, CONN, 'issues');
    expect(s).toMatchObject({ status: 'success', error: null });
    const [run] = (await t.call({ method: 'GET', url: `/sync/${CONN}/issues/runs?provider_config_key=${KEY}` })).json().runs;
    const logs = (await t.call({ method: 'GET', url: `/runs/${run.id}/logs` })).json().logs as {
      level: string;
      message: string;
      data?: Record<string, unknown>;
    }[];
    const retries = logs.filter((l) => / retrying in /.test(l.message));
    expect(retries).toHaveLength(2);
    expect(retries.map((l) => [l.level, l.data?.attempt, l.data?.status])).toEqual([
      ['warn', 1, 503],
      ['warn', 2, 503],
    ]);
    expect(retries[0]!.message).toMatch(/^GET http:\/\/127\.0\.0\.1:\d+\/\S+ answered 503: retrying in \d+\.\d s \(attempt 2 of 4\)$/);
    expect(typeof retries[0]!.data?.delay_ms).toBe('number');
  });
});
