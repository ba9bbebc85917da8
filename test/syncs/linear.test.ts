import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { allRecords, connectFake, enable, recordsPage, syncStatus, until, waitForRun } from '../helpers/syncs.js';
import type { LoggedRequest } from '../fixtures/providers/github.js';
import { type FakeLinear, type FakeLinearIssue, startFakeLinear } from '../fixtures/providers/linear.js';

let t: TestApp;
let lin: FakeLinear;
let seeded: FakeLinearIssue[];
const KEY = 'linear';
const CONN = 'acme';

type Run = {
  id: string;
  status: string;
  trigger: string;
  added: number;
  updated: number;
  deleted: number;
  error: { message: string; upstream?: { status: number; body: string } } | null;
};
const runsOf = async (name: string) => {
  const r = await t.call({ method: 'GET', url: `/sync/${CONN}/${name}/runs?provider_config_key=${KEY}` });
  expect(r.statusCode, r.body).toBe(200);
  return r.json().runs as Run[];
};
const triggerSync = async (name: string) => {
  const r = await t.call({
    method: 'POST',
    url: '/sync/trigger',
    payload: { connection_id: CONN, provider_config_key: KEY, syncs: [name] },
  });
  expect(r.statusCode, r.body).toBe(200);
};
type Vars = { first?: number; cursor?: string | null; filter?: { updatedAt?: { gt?: string } }; input?: Record<string, unknown> };
const vars = (r: LoggedRequest) => (r.body as { variables?: Vars }).variables ?? {};
/** Requests whose GraphQL query is `op` (by the query text: a refused request has no `operation` in the log). */
const ops = (op: 'issues' | 'issueCreate') =>
  lin.controls.requests.filter((r) => new RegExp(`\\b${op}\\s*\\(`).test((r.body as { query?: string }).query ?? ''));
const newestUpdatedAt = () =>
  lin.state.issues
    .map((i) => i.updatedAt)
    .sort()
    .at(-1)!;
const team = (key: string) => lin.state.teams.find((x) => x.key === key)!;
const identifier = (i: FakeLinearIssue) => `${lin.state.teams.find((x) => x.id === i.teamId)!.key}-${i.number}`;

beforeAll(async () => {
  lin = await startFakeLinear();
  // 250 issues over two teams (three pages of 100, archived ones included), the last 5 archived.
  seeded = lin.controls.seed({ issues: 250, teams: ['ENG', 'OPS'], archived: 5 });
  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true } });
  await connectFake(t, { key: KEY, provider: 'linear', baseUrl: lin.url, token: lin.token, connectionId: CONN });
});
afterAll(async () => {
  await t?.close();
  await lin?.close();
});

describe('Linear issues (incremental sync)', () => {
  let firstCursor: string | undefined;

  it('stores every live issue on the first run (archived ones are not records)', async () => {
    const fn = await enable(t, KEY, 'issues');
    expect(fn).toMatchObject({ name: 'issues', sync_type: 'incremental', frequency: '15m', models: ['LinearIssue'], auto_start: true });
    const s = await waitForRun(t, KEY, CONN, 'issues');
    expect(s).toMatchObject({ status: 'success', records_count: 245, error: null });

    const calls = ops('issues');
    expect(calls).toHaveLength(3);
    expect(calls.every((r) => r.path === '/graphql' && r.method === 'POST' && r.headers.authorization === `Bearer ${lin.token}`)).toBe(
      true,
    );
    // No lower bound on the first run; then the cursor of the previous page.
    expect(calls.map((r) => vars(r).filter)).toEqual([undefined, undefined, undefined]);
    expect(vars(calls[0]!)).toMatchObject({ first: 100, cursor: null });
    expect(calls.slice(1).every((r) => typeof vars(r).cursor === 'string')).toBe(true);
    expect((calls[0]!.body as { query: string }).query).toMatch(/includeArchived: true/);

    const { records, cursor } = await allRecords(t, KEY, CONN, 'LinearIssue', { limit: 100 });
    expect(records).toHaveLength(245);
    const live = seeded.filter((i) => i.archivedAt === null);
    expect(new Set(records.map((r) => r.id))).toEqual(new Set(live.map((i) => i.id)));
    expect(records.every((r) => r._nango_metadata.last_action === 'ADDED')).toBe(true);
    const [eng1, ops1] = seeded;
    expect(records.find((r) => r.id === eng1!.id)).toEqual({
      id: eng1!.id,
      identifier: 'ENG-1',
      title: 'Issue ENG-1',
      description: null,
      stateName: 'Todo',
      priority: 0,
      assigneeId: lin.state.users[0]!.id,
      assigneeName: 'Ada Lovelace',
      teamKey: 'ENG',
      url: 'https://linear.app/acme/issue/ENG-1/issue-eng-1',
      createdAt: eng1!.createdAt,
      updatedAt: eng1!.updatedAt,
      archivedAt: null,
      _nango_metadata: expect.objectContaining({ last_action: 'ADDED', deleted_at: null }),
    });
    expect(records.find((r) => r.id === ops1!.id)).toMatchObject({
      identifier: 'OPS-1',
      teamKey: 'OPS',
      priority: 1,
      description: 'Description 1',
      assigneeId: null,
      assigneeName: null,
    });
    firstCursor = cursor;
    const [run] = await runsOf('issues');
    expect(run).toMatchObject({ status: 'success', added: 245, updated: 0, deleted: 0 });
  });

  it('the next run sends the updatedAt filter from the checkpoint; an update, an archive and a new issue are exactly the changes', async () => {
    const before = await syncStatus(t, KEY, CONN, 'issues');
    const bound = newestUpdatedAt();
    const updated = lin.controls.updateIssue(seeded[10]!.id, { title: 'Renamed', stateName: 'In Progress', priority: 2 });
    const archived = lin.controls.archiveIssue(seeded[11]!.id);
    const added = lin.controls.addIssue({ title: 'Brand new', teamKey: 'OPS', priority: 3 });
    lin.controls.clearRequests();
    await triggerSync('issues');
    const s = await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
    expect(s).toMatchObject({ status: 'success', records_count: 245, error: null });

    const calls = ops('issues');
    expect(calls).toHaveLength(1);
    expect(vars(calls[0]!)).toMatchObject({ first: 100, cursor: null, filter: { updatedAt: { gt: bound } } });

    const { records } = await allRecords(t, KEY, CONN, 'LinearIssue', { cursor: firstCursor });
    expect(records.map((r) => [r.id, r._nango_metadata.last_action]).sort()).toEqual(
      [
        [updated.id, 'UPDATED'],
        [archived.id, 'DELETED'],
        [added.id, 'ADDED'],
      ].sort(),
    );
    expect(records.find((r) => r.id === updated.id)).toMatchObject({
      title: 'Renamed',
      stateName: 'In Progress',
      priority: 2,
      updatedAt: updated.updatedAt,
    });
    expect(records.find((r) => r.id === added.id)).toMatchObject({
      identifier: identifier(added),
      title: 'Brand new',
      teamKey: 'OPS',
      priority: 3,
      assigneeId: null,
    });
    expect(records.find((r) => r.id === archived.id)!._nango_metadata.deleted_at).toEqual(expect.any(String));
    const [run] = await runsOf('issues');
    expect(run).toMatchObject({ status: 'success', trigger: 'manual', added: 1, updated: 1, deleted: 1 });

    // Nothing changed since: the bound moved to the newest updatedAt seen, and nothing is rewritten.
    const again = await syncStatus(t, KEY, CONN, 'issues');
    lin.controls.clearRequests();
    await triggerSync('issues');
    await waitForRun(t, KEY, CONN, 'issues', again.last_sync_date);
    expect(ops('issues').map((r) => vars(r).filter)).toEqual([{ updatedAt: { gt: newestUpdatedAt() } }]);
    expect((await runsOf('issues'))[0]).toMatchObject({ status: 'success', added: 0, updated: 0, deleted: 0 });
  });

  it('a run that fails partway resumes from its saved cursor, and no change is lost or repeated', async () => {
    const before = await syncStatus(t, KEY, CONN, 'issues');
    const { cursor: feedCursor } = await allRecords(t, KEY, CONN, 'LinearIssue');
    const bound = newestUpdatedAt();
    // 150 changes: two pages.
    const changed = seeded.filter((i) => i.archivedAt === null).slice(20, 170);
    for (const [n, i] of changed.entries()) lin.controls.updateIssue(i.id, { priority: (n % 4) + 1 });
    lin.controls.clearRequests();

    // The token is revoked once the first page is answered: page 2 answers Linear's HTTP 400 AUTHENTICATION_ERROR.
    const token = lin.token;
    lin.controls.delayMs = 300;
    try {
      await triggerSync('issues');
      await until('the first page answered', async () => (lin.controls.requests[0]?.status ?? 0) > 0, undefined, 5);
      lin.controls.setToken('lin_revoked');
    } finally {
      lin.controls.delayMs = 0;
    }
    const failed = await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
    lin.controls.setToken(token);
    expect(failed.status).toBe('error');
    const [failedRun] = await runsOf('issues');
    expect(failedRun).toMatchObject({
      status: 'error',
      updated: 100,
      error: { upstream: { status: 400, body: expect.stringContaining('AUTHENTICATION_ERROR') } },
    });
    const [page1, page2] = ops('issues');
    expect(vars(page1!)).toMatchObject({ cursor: null, filter: { updatedAt: { gt: bound } } });
    const resumeCursor = vars(page2!).cursor;
    expect(resumeCursor).toEqual(expect.any(String));

    lin.controls.clearRequests();
    await triggerSync('issues');
    const ok = await waitForRun(t, KEY, CONN, 'issues', failed.last_sync_date);
    expect(ok).toMatchObject({ status: 'success', records_count: 245, error: null });
    // The checkpoint kept the old bound and the cursor: the new run goes on from page 2.
    const resumed = ops('issues');
    expect(resumed).toHaveLength(1);
    expect(vars(resumed[0]!)).toMatchObject({ cursor: resumeCursor, filter: { updatedAt: { gt: bound } } });
    expect((await runsOf('issues'))[0]).toMatchObject({ status: 'success', updated: 50 });

    const { records } = await allRecords(t, KEY, CONN, 'LinearIssue', { cursor: feedCursor });
    expect(records).toHaveLength(150);
    expect(new Set(records.map((r) => r.id))).toEqual(new Set(changed.map((i) => i.id)));
    expect(records.every((r) => r._nango_metadata.last_action === 'UPDATED')).toBe(true);
    expect(records.find((r) => r.id === changed[0]!.id)).toMatchObject({ priority: 1, updatedAt: changed[0]!.updatedAt });

    // And the run after that starts from the newest change of both runs.
    const again = await syncStatus(t, KEY, CONN, 'issues');
    lin.controls.clearRequests();
    await triggerSync('issues');
    await waitForRun(t, KEY, CONN, 'issues', again.last_sync_date);
    expect(ops('issues').map((r) => vars(r))).toEqual([
      expect.objectContaining({ cursor: null, filter: { updatedAt: { gt: newestUpdatedAt() } } }),
    ]);
  });

  it('reset lists every issue again without the filter and deletes the issues gone for good', async () => {
    const before = await syncStatus(t, KEY, CONN, 'issues');
    // Deleted for good (not archived): only a full listing notices.
    const purged = seeded[30]!;
    lin.state.issues.splice(lin.state.issues.indexOf(purged), 1);
    lin.controls.clearRequests();
    const r = await t.call({
      method: 'POST',
      url: '/sync/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['issues'], reset: true },
    });
    expect(r.statusCode, r.body).toBe(200);
    const s = await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
    expect(s).toMatchObject({ status: 'success', records_count: 244, error: null });
    expect(ops('issues').map((q) => vars(q).filter)).toEqual([undefined, undefined, undefined]);
    expect((await runsOf('issues'))[0]).toMatchObject({ status: 'success', added: 0, updated: 0, deleted: 1 });
    const deleted = (await recordsPage(t, KEY, CONN, `model=LinearIssue&filter=deleted&ids=${purged.id}`)).json().records;
    expect(deleted).toHaveLength(1);
    expect(deleted[0]._nango_metadata).toMatchObject({ last_action: 'DELETED', deleted_at: expect.any(String) });

    // The full run leaves a checkpoint: the next run is incremental again.
    const again = await syncStatus(t, KEY, CONN, 'issues');
    lin.controls.clearRequests();
    await triggerSync('issues');
    await waitForRun(t, KEY, CONN, 'issues', again.last_sync_date);
    expect(ops('issues').map((q) => vars(q).filter)).toEqual([{ updatedAt: { gt: newestUpdatedAt() } }]);
  });

  it("waits out Linear's rate limits, HTTP 400 RATELIMITED (backing off) and 429 + Retry-After, and succeeds", async () => {
    const before = await syncStatus(t, KEY, CONN, 'issues');
    const edited = lin.controls.updateIssue(seeded[0]!.id, { title: 'After the limit' });
    lin.controls.clearRequests();
    // Linear's own answer (HTTP 400, extensions.code RATELIMITED) is retried by the function after 1 s; then two
    // 429 + Retry-After: 1 are waited out by the HTTP client (test config: 3 retries per call).
    lin.controls.rateLimitNext(1);
    lin.controls.rateLimitNext(2, { mode: 'http429', retryAfterSeconds: 1 });
    const t0 = Date.now();
    await triggerSync('issues');
    const s = await waitForRun(t, KEY, CONN, 'issues', before.last_sync_date);
    expect(s).toMatchObject({ status: 'success', error: null });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2950);
    expect(lin.controls.requests.map((r) => [r.status, r.fault ?? r.operation])).toEqual([
      [400, 'rate-limit'],
      [429, 'rate-limit'],
      [429, 'rate-limit'],
      [200, 'issues'],
    ]);
    // The same query every time.
    expect(new Set(lin.controls.requests.map((r) => JSON.stringify(r.body))).size).toBe(1);
    expect((await runsOf('issues'))[0]).toMatchObject({ status: 'success', updated: 1 });
    expect((await recordsPage(t, KEY, CONN, `model=LinearIssue&ids=${edited.id}`)).json().records[0]).toMatchObject({
      title: 'After the limit',
    });
  });
});

describe('Linear create-issue (action)', () => {
  beforeAll(async () => {
    await enable(t, KEY, 'create-issue');
  });
  const create = (input: Record<string, unknown>) =>
    t.call({
      method: 'POST',
      url: '/action/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, action_name: 'create-issue', input },
    });

  it('creates the issue and answers with its id, identifier, title and url', async () => {
    lin.controls.clearRequests();
    const input = { teamId: team('ENG').id, title: 'From Terapi', description: 'Filed by the action', priority: 2 };
    const r = await create(input);
    expect(r.statusCode, r.body).toBe(200);
    const issue = lin.state.issues.find((i) => i.title === 'From Terapi')!;
    expect(issue).toMatchObject({ teamId: team('ENG').id, description: 'Filed by the action', priority: 2 });
    expect(r.json()).toEqual({
      success: true,
      action_name: 'create-issue',
      error: null,
      output: {
        id: issue.id,
        identifier: identifier(issue),
        title: 'From Terapi',
        url: `https://linear.app/acme/issue/${identifier(issue)}/from-terapi`,
      },
    });
    expect(ops('issueCreate').map((q) => vars(q).input)).toEqual([input]);
  });

  it('refuses input that fails the schema (400 naming the field) without calling Linear', async () => {
    lin.controls.clearRequests();
    const teamId = team('ENG').id;
    const cases: [Record<string, unknown>, string][] = [
      [{ title: 'x' }, 'input.teamId'],
      [{ teamId: 'not a team id!', title: 'x' }, 'input.teamId'],
      [{ teamId, title: '' }, 'input.title'],
      [{ teamId, title: 'x', priority: 7 }, 'input.priority'],
      [{ teamId, title: 'x', priority: 1.5 }, 'input.priority'],
    ];
    for (const [input, field] of cases) {
      const r = await create(input);
      expect(r.statusCode, r.body).toBe(400);
      expect(r.json().message.startsWith(`${field}: `), r.body).toBe(true);
      expect(r.json().details[0].field).toBe(field);
    }
    expect(lin.controls.requests).toHaveLength(0);
  });

  it('answers 424 provider_error with the GraphQL errors when Linear answers HTTP 200 with errors', async () => {
    const count = lin.state.issues.length;
    const r = await create({ teamId: 'no-such-team', title: 'x' });
    expect(r.statusCode, r.body).toBe(424);
    const body = r.json();
    expect(body).toMatchObject({
      error: 'provider_error',
      action_name: 'create-issue',
      message: 'Linear GraphQL error: Entity not found: Team (INVALID_INPUT)',
    });
    expect(body.upstream.status).toBe(200);
    expect(JSON.parse(body.upstream.body).errors[0].extensions.code).toBe('INVALID_INPUT');
    expect(lin.state.issues).toHaveLength(count);
  });

  it('answers 424 with the upstream status and body when Linear refuses with a non-2xx (bad token)', async () => {
    const token = lin.token;
    lin.controls.setToken('lin_other');
    try {
      const r = await create({ teamId: team('ENG').id, title: 'never' });
      expect(r.statusCode, r.body).toBe(424);
      expect(r.json()).toMatchObject({
        error: 'provider_error',
        upstream: { status: 400, body: expect.stringContaining('AUTHENTICATION_ERROR') },
      });
      const run = await t.call({ method: 'GET', url: `/action/${r.json().run_id}` });
      expect(run.json()).toMatchObject({ status: 'error', upstream: { status: 400 } });
    } finally {
      lin.controls.setToken(token);
    }
    expect(lin.state.issues.some((i) => i.title === 'never')).toBe(false);
  });

  it('waits out a RATELIMITED answer and creates the issue once', async () => {
    lin.controls.clearRequests();
    lin.controls.rateLimitNext(1);
    const r = await create({ teamId: team('OPS').id, title: 'Patient' });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json().output).toMatchObject({ title: 'Patient', identifier: expect.stringMatching(/^OPS-\d+$/) });
    expect(lin.controls.requests.map((q) => q.status)).toEqual([400, 200]);
    expect(lin.state.issues.filter((i) => i.title === 'Patient')).toHaveLength(1);
  });
});
