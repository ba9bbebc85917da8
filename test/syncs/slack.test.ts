import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { allRecords, connectFake, enable, recordsPage, syncStatus, until, waitForRun } from '../helpers/syncs.js';
import { type FakeSlack, type FakeSlackChannel, startFakeSlack } from '../fixtures/providers/slack.js';

let t: TestApp;
let slack: FakeSlack;
const KEY = 'slack';
const CONN = 'acme';

type Run = {
  id: string;
  status: string;
  trigger: string;
  added: number;
  updated: number;
  deleted: number;
  error: { message: string; upstream?: unknown } | null;
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
const requestsTo = (method: string, from = 0) => slack.controls.requests.slice(from).filter((r) => r.path === `/${method}`);
const user = (name: string) => [...slack.state.users.values()].find((u) => u.name === name)!;
const channel = (name: string) => [...slack.state.channels.values()].find((c) => c.name === name)!;

beforeAll(async () => {
  slack = await startFakeSlack();
  // Users: a few with distinctive fields, then generated ones (450 in all: three users.list pages of 200).
  slack.controls.seed({
    users: [
      {
        name: 'ada',
        real_name: 'Ada Lovelace',
        display_name: 'countess',
        email: 'ada@example.test',
        is_admin: true,
        tz: 'Europe/London',
        updated: 1_700_000_000,
      },
      { name: 'robot', real_name: 'Robot', display_name: '', email: null, is_bot: true, tz: null },
      // Deactivated: Slack drops real_name/tz/is_admin at the top level but keeps the profile.
      { name: 'gone', real_name: 'Gone Person', display_name: 'gone', is_admin: true, deleted: true },
    ],
  });
  slack.controls.seed({ users: 447 });
  // Channels, in id order (C… public before G… private): 32 public, 2 private the bot is in, 400 private it is
  // not in (hidden), and one more private one it is in at the very end. conversations.list pages by 200 and filters
  // afterwards: page 1 shows 34 channels, page 2 none (with a next_cursor), page 3 one.
  slack.controls.seed({
    channels: [
      { name: 'general', topic: 'Company-wide', purpose: 'Announcements', num_members: 42 },
      { name: 'old-stuff', is_archived: true, num_members: null },
    ],
  });
  slack.controls.seed({ channels: 30 });
  slack.controls.seed({
    channels: [
      { name: 'secret', is_private: true, topic: 'hush', num_members: 3 },
      { name: 'kickme', is_private: true },
    ],
  });
  slack.controls.seed({ channels: Array.from({ length: 400 }, (_, i) => ({ name: `hidden-${i}`, is_private: true, is_member: false })) });
  slack.controls.seed({ channels: [{ name: 'last-private', is_private: true }] });
  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true } });
  await connectFake(t, { key: KEY, provider: 'slack', baseUrl: slack.url, token: slack.token, connectionId: CONN });
});
afterAll(async () => {
  await t?.close();
  await slack?.close();
});

describe('Slack users (full sync)', () => {
  let firstCursor: string | undefined;

  it('runs on enable and stores every member, bots and deactivated users included', async () => {
    const fn = await enable(t, KEY, 'users', { frequency: '1h' });
    expect(fn).toMatchObject({
      name: 'users',
      type: 'sync',
      enabled: true,
      sync_type: 'full',
      frequency: '1h',
      models: ['SlackUser'],
      auto_start: true,
    });
    const s = await waitForRun(t, KEY, CONN, 'users');
    expect(s).toMatchObject({ status: 'success', records_count: 450, error: null });

    const calls = requestsTo('users.list');
    expect(calls).toHaveLength(3);
    expect(calls.map((r) => r.query.limit)).toEqual(['200', '200', '200']);
    expect(calls[0]!.query.cursor).toBeUndefined();
    expect(calls.slice(1).every((r) => r.query.cursor)).toBe(true);
    expect(calls.every((r) => r.headers.authorization === `Bearer ${slack.token}`)).toBe(true);

    const { records, cursor } = await allRecords(t, KEY, CONN, 'SlackUser', { limit: 200 });
    expect(records).toHaveLength(450);
    expect(new Set(records.map((r) => r.id))).toEqual(new Set(slack.state.users.keys()));
    expect(records.every((r) => r._nango_metadata.last_action === 'ADDED')).toBe(true);
    const byName = (name: string) => records.find((r) => r.name === name);
    expect(byName('ada')).toEqual({
      id: user('ada').id,
      name: 'ada',
      real_name: 'Ada Lovelace',
      display_name: 'countess',
      email: 'ada@example.test',
      is_bot: false,
      is_admin: true,
      deleted: false,
      tz: 'Europe/London',
      updated: 1_700_000_000,
      _nango_metadata: expect.objectContaining({ last_action: 'ADDED', deleted_at: null }),
    });
    // Slack's empty strings and missing fields are null in the model.
    expect(byName('robot')).toMatchObject({ is_bot: true, email: null, display_name: null, tz: null, real_name: 'Robot' });
    // A deactivated user: real_name from the profile, no tz, not admin any more.
    expect(byName('gone')).toMatchObject({ deleted: true, real_name: 'Gone Person', tz: null, is_admin: false, display_name: 'gone' });
    firstCursor = cursor;
    const [run] = await runsOf('users');
    expect(run).toMatchObject({ status: 'success', added: 450, updated: 0, deleted: 0 });
  });

  it('a renamed user, a deactivated user and a new user are exactly the changes in the feed', async () => {
    const before = await syncStatus(t, KEY, CONN, 'users');
    const ids = [...slack.state.users.keys()];
    const renamed = slack.controls.updateUser(ids[10]!, { real_name: 'Renamed Person' });
    const deactivated = slack.controls.removeUser(ids[20]!);
    slack.controls.seed({ users: [{ name: 'newbie', real_name: 'New Bie' }] });
    await triggerSync('users');
    const s = await waitForRun(t, KEY, CONN, 'users', before.last_sync_date);
    // Deactivated users are records (deleted: true), not deletions.
    expect(s).toMatchObject({ status: 'success', records_count: 451 });
    const { records } = await allRecords(t, KEY, CONN, 'SlackUser', { cursor: firstCursor });
    expect(records.map((r) => [r.id, r._nango_metadata.last_action]).sort()).toEqual(
      [
        [renamed.id, 'UPDATED'],
        [deactivated.id, 'UPDATED'],
        [user('newbie').id, 'ADDED'],
      ].sort(),
    );
    expect(records.find((r) => r.id === renamed.id)).toMatchObject({ real_name: 'Renamed Person', updated: renamed.updated });
    expect(records.find((r) => r.id === deactivated.id)).toMatchObject({ deleted: true, tz: null, _nango_metadata: { deleted_at: null } });
    expect(records.find((r) => r.name === 'newbie')).toMatchObject({ real_name: 'New Bie', deleted: false });
    const [run] = await runsOf('users');
    expect(run).toMatchObject({ status: 'success', trigger: 'manual', added: 1, updated: 2, deleted: 0 });
  });

  it('waits out 429 + Retry-After (three in a row on one call) and succeeds', async () => {
    const before = await syncStatus(t, KEY, CONN, 'users');
    const mark = slack.controls.requests.length;
    slack.controls.rateLimitNext(3, { retryAfterSeconds: 1 });
    const t0 = Date.now();
    await triggerSync('users');
    const s = await waitForRun(t, KEY, CONN, 'users', before.last_sync_date);
    expect(s).toMatchObject({ status: 'success', records_count: 451, error: null });
    // Retry-After is honoured: three one-second waits.
    expect(Date.now() - t0).toBeGreaterThanOrEqual(2900);
    const calls = requestsTo('users.list', mark);
    expect(calls.map((r) => r.status)).toEqual([429, 429, 429, 200, 200, 200]);
    // The retried call is the same first page.
    expect(calls.slice(0, 4).every((r) => r.query.cursor === undefined)).toBe(true);
    const [run] = await runsOf('users');
    expect(run).toMatchObject({ status: 'success', added: 0, updated: 0, deleted: 0 });
  });
});

describe('Slack channels (full sync)', () => {
  let firstCursor: string | undefined;

  it('follows next_cursor through short and empty pages and maps every channel', async () => {
    const fn = await enable(t, KEY, 'channels', { auto_start: true });
    expect(fn).toMatchObject({ sync_type: 'full', auto_start: true, models: ['SlackChannel'] });
    const s = await waitForRun(t, KEY, CONN, 'channels');
    expect(s).toMatchObject({ status: 'success', records_count: 35, error: null });
    const calls = requestsTo('conversations.list');
    expect(calls).toHaveLength(3);
    expect(calls[0]!.query).toMatchObject({ types: 'public_channel,private_channel', exclude_archived: 'false', limit: '200' });

    const { records, cursor } = await allRecords(t, KEY, CONN, 'SlackChannel');
    expect(records).toHaveLength(35);
    expect(records.some((r) => String(r.name).startsWith('hidden-'))).toBe(false);
    // Only on the third page, after an empty second one.
    expect(records.some((r) => r.name === 'last-private')).toBe(true);
    const general: FakeSlackChannel = channel('general');
    expect(records.find((r) => r.name === 'general')).toEqual({
      id: general.id,
      name: 'general',
      is_private: false,
      is_archived: false,
      topic: 'Company-wide',
      purpose: 'Announcements',
      num_members: 42,
      created: general.created,
      _nango_metadata: expect.objectContaining({ last_action: 'ADDED' }),
    });
    expect(records.find((r) => r.name === 'old-stuff')).toMatchObject({ is_archived: true, num_members: null, topic: '', purpose: '' });
    expect(records.find((r) => r.name === 'secret')).toMatchObject({
      id: expect.stringMatching(/^G/),
      is_private: true,
      topic: 'hush',
      num_members: 3,
    });
    firstCursor = cursor;
  });

  it('a run that fails partway deletes nothing; the next successful run deletes the channels it did not see', async () => {
    const before = await syncStatus(t, KEY, CONN, 'channels');
    const general = channel('general');
    general.topic = 'New topic';
    const launch = slack.controls.addChannel({ name: 'launch' });
    // The bot is removed from a private channel: it is no longer listed.
    const kicked = channel('kickme');
    kicked.is_member = false;

    // The token is revoked once the first page is answered: page 2 answers invalid_auth.
    const token = slack.token;
    const mark = slack.controls.requests.length;
    slack.controls.delayMs = 300;
    try {
      await triggerSync('channels');
      await until('the first page answered', async () => (slack.controls.requests[mark]?.status ?? 0) > 0, undefined, 5);
      slack.controls.setToken('xoxb-revoked');
    } finally {
      slack.controls.delayMs = 0;
    }
    const failed = await waitForRun(t, KEY, CONN, 'channels', before.last_sync_date);
    slack.controls.setToken(token);
    // Page 1 was saved before the failure (the new channel is there), but nothing was deleted.
    expect(failed).toMatchObject({ status: 'error', records_count: 36 });
    expect(failed.error).toMatch(/conversations\.list failed: invalid_auth/);
    expect(requestsTo('conversations.list', mark).length).toBeGreaterThanOrEqual(2);
    const [failedRun] = await runsOf('channels');
    expect(failedRun).toMatchObject({ status: 'error', deleted: 0, error: { message: expect.stringMatching(/invalid_auth/) } });
    expect(failedRun!.error!.upstream).toMatchObject({ status: 200, body: expect.stringContaining('invalid_auth') });
    expect((await recordsPage(t, KEY, CONN, 'model=SlackChannel&filter=deleted')).json().records).toHaveLength(0);

    await triggerSync('channels');
    const ok = await waitForRun(t, KEY, CONN, 'channels', failed.last_sync_date);
    expect(ok).toMatchObject({ status: 'success', records_count: 35, error: null });
    const [okRun] = await runsOf('channels');
    expect(okRun).toMatchObject({ status: 'success', deleted: 1 });
    // Across both runs, the feed holds exactly the three changes.
    const { records } = await allRecords(t, KEY, CONN, 'SlackChannel', { cursor: firstCursor });
    expect(records.map((r) => [r.id, r._nango_metadata.last_action]).sort()).toEqual(
      [
        [general.id, 'UPDATED'],
        [launch.id, 'ADDED'],
        [kicked.id, 'DELETED'],
      ].sort(),
    );
    expect(records.find((r) => r.id === general.id)).toMatchObject({ topic: 'New topic' });
    expect(records.find((r) => r.id === kicked.id)!._nango_metadata.deleted_at).toEqual(expect.any(String));
  });
});

describe('Slack send-message (action)', () => {
  beforeAll(async () => {
    await enable(t, KEY, 'send-message');
  });
  const send = (input: Record<string, unknown>) =>
    t.call({
      method: 'POST',
      url: '/action/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, action_name: 'send-message', input },
    });

  it('posts the message (JSON with a charset) and answers with its output', async () => {
    const general = channel('general');
    const r = await send({ channel: general.id, text: 'hello' });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toEqual({
      success: true,
      action_name: 'send-message',
      error: null,
      output: { ok: true, channel: general.id, ts: expect.stringMatching(/^\d+\.\d+$/), text: 'hello' },
    });
    const posted = slack.controls.messages.at(-1)!;
    expect(posted).toMatchObject({
      channel: general.id,
      text: 'hello',
      ts: r.json().output.ts,
      contentType: 'application/json; charset=utf-8',
    });
    expect(posted.thread_ts).toBeUndefined();

    // By name, in a thread: the output names the channel id.
    const reply = await send({ channel: '#general', text: 'in the thread', thread_ts: posted.ts });
    expect(reply.statusCode, reply.body).toBe(200);
    expect(reply.json().output).toMatchObject({ ok: true, channel: general.id, text: 'in the thread' });
    expect(slack.controls.messages.at(-1)).toMatchObject({ channel: general.id, thread_ts: posted.ts });
  });

  it('refuses input that fails the schema (400 naming the field) without calling Slack', async () => {
    const mark = slack.controls.requests.length;
    const cases: [Record<string, unknown>, string][] = [
      [{ channel: 'two words', text: 'x' }, 'input.channel'],
      [{ channel: 'C123' }, 'input.text'],
      [{ channel: 'C123', text: '' }, 'input.text'],
      [{ channel: 'C123', text: 'x', thread_ts: 'yesterday' }, 'input.thread_ts'],
    ];
    for (const [input, field] of cases) {
      const r = await send(input);
      expect(r.statusCode, r.body).toBe(400);
      expect(r.json().message).toMatch(new RegExp(`^${field.replace('.', '\\.')}: `));
      expect(r.json().details[0].field).toBe(field);
    }
    expect(slack.controls.requests.length).toBe(mark);
  });

  it("answers 424 provider_error with Slack's answer when Slack says ok: false", async () => {
    const count = slack.controls.messages.length;
    const r = await send({ channel: 'C0NOSUCH1', text: 'anyone?' });
    expect(r.statusCode, r.body).toBe(424);
    const body = r.json();
    expect(body).toMatchObject({
      error: 'provider_error',
      action_name: 'send-message',
      message: 'Slack chat.postMessage failed: channel_not_found',
      run_id: expect.any(String),
    });
    // Slack answered HTTP 200 with ok: false: that answer is what the backend gets.
    expect(body.upstream.status).toBe(200);
    expect(JSON.parse(body.upstream.body)).toMatchObject({ ok: false, error: 'channel_not_found' });
    const run = await t.call({ method: 'GET', url: `/action/${body.run_id}` });
    expect(run.json()).toMatchObject({
      status: 'error',
      success: false,
      error: 'Slack chat.postMessage failed: channel_not_found',
      upstream: { status: 200 },
      output: null,
    });

    const lurk = slack.controls.addChannel({ name: 'lurk', is_member: false });
    const notIn = await send({ channel: lurk.id, text: 'hi' });
    expect(notIn.statusCode).toBe(424);
    expect(notIn.json()).toMatchObject({ error: 'provider_error', message: 'Slack chat.postMessage failed: not_in_channel' });
    expect(slack.controls.messages.length).toBe(count);
  });

  it('answers 424 with the upstream 429 once the retries are spent, and waits out a single 429', async () => {
    const general = channel('general');
    const count = slack.controls.messages.length;
    let mark = slack.controls.requests.length;
    // Test config: 3 retries per call, so a fourth 429 in a row is final.
    slack.controls.rateLimitNext(4, { retryAfterSeconds: 0 });
    const r = await send({ channel: general.id, text: 'too fast' });
    expect(r.statusCode, r.body).toBe(424);
    expect(r.json()).toMatchObject({ error: 'provider_error', upstream: { status: 429, body: expect.stringContaining('"ratelimited"') } });
    expect(requestsTo('chat.postMessage', mark)).toHaveLength(4);
    expect(slack.controls.messages.length).toBe(count);

    mark = slack.controls.requests.length;
    slack.controls.rateLimitNext(1, { retryAfterSeconds: 1 });
    const t0 = Date.now();
    const ok = await send({ channel: general.id, text: 'patient' });
    expect(ok.statusCode, ok.body).toBe(200);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    expect(requestsTo('chat.postMessage', mark).map((q) => q.status)).toEqual([429, 200]);
    expect(slack.controls.messages.at(-1)).toMatchObject({ text: 'patient' });
  });
});
