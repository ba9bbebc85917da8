/**
 * Nango's Node SDK against Terapi: integrations, providers, connections, metadata, tokens and connect sessions.
 * Each call goes through the SDK's own HTTP client (axios) to a listening Terapi, exactly as a backend written
 * against Nango would call it after changing the host.
 */
import type { Nango } from '@nangohq/node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { failure, sdkFor } from './sdk.js';

let t: TestApp;
let nango: Nango;

const importConnection = async (body: Record<string, unknown>) => {
  const r = await t.call({ method: 'POST', url: '/connections', payload: body });
  expect([200, 201], r.body).toContain(r.statusCode);
};
const connectionStatus = async (key: string, id: string) =>
  (await t.call({ method: 'GET', url: `/connection/${id}?provider_config_key=${key}` })).statusCode;

beforeAll(async () => {
  t = await createTestApp();
  nango = await sdkFor(t);
});
afterAll(async () => t?.close());

describe('integrations', () => {
  it('createIntegration, getIntegration, listIntegrations, updateIntegration', async () => {
    const created = await nango.createIntegration({
      unique_key: 'gh',
      provider: 'github',
      display_name: 'GitHub (work)',
      credentials: { type: 'OAUTH2', client_id: 'client-1', client_secret: 'secret-1', scopes: 'repo,read:user' },
    });
    expect(created.data).toMatchObject({ unique_key: 'gh', provider: 'github', display_name: 'GitHub (work)' });

    const got = await nango.getIntegration({ uniqueKey: 'gh' });
    expect(got.data).toMatchObject({ unique_key: 'gh', credentials: { type: 'OAUTH2', client_id: 'client-1', scopes: 'repo,read:user' } });
    expect(JSON.stringify(got)).not.toContain('secret-1');

    const { configs } = await nango.listIntegrations();
    expect(configs.map((c) => c.unique_key)).toEqual(['gh']);

    const updated = await nango.updateIntegration({ uniqueKey: 'gh' }, { display_name: 'GitHub' });
    expect(updated.data).toMatchObject({ unique_key: 'gh', display_name: 'GitHub' });
    expect((await nango.getIntegration({ uniqueKey: 'gh' })).data.display_name).toBe('GitHub');
  });

  it('a bad integration answers 400 naming the field, a missing one 404', async () => {
    const bad = await failure(nango.createIntegration({ unique_key: 'has space', provider: 'github' }));
    expect(bad.status).toBe(400);
    expect(bad.body.details?.[0]?.field).toBe('unique_key');
    expect((await failure(nango.getIntegration({ uniqueKey: 'nothing' }))).status).toBe(404);
  });

  it('deleteIntegration removes it and its connections', async () => {
    await nango.createIntegration({ unique_key: 'doomed', provider: 'github' });
    await importConnection({ provider_config_key: 'doomed', connection_id: 'x', credentials: { type: 'OAUTH2', access_token: 'gone' } });
    const res = await nango.deleteIntegration('doomed');
    expect(res.status).toBe(200);
    expect((await failure(nango.getIntegration({ uniqueKey: 'doomed' }))).status).toBe(404);
    expect(await connectionStatus('doomed', 'x')).toBe(404);
  });
});

describe('providers', () => {
  it('listProviders (with a search) and getProvider', async () => {
    const list = (await nango.listProviders({ search: 'git' })) as unknown as {
      data: { name: string }[];
    };
    expect(list.data.map((p) => p.name)).toContain('github');
    const one = (await nango.getProvider({ provider: 'github' })) as unknown as { data: { name: string; auth_mode: string } };
    expect(one.data).toMatchObject({ name: 'github', auth_mode: 'OAUTH2' });
    expect((await failure(nango.getProvider({ provider: 'no-such-provider' }))).status).toBe(404);
  });
});

describe('connections', () => {
  beforeAll(async () => {
    await nango.createIntegration({ unique_key: 'ashby', provider: 'ashby' });
    await importConnection({
      provider_config_key: 'gh',
      connection_id: 'alice',
      credentials: { type: 'OAUTH2', access_token: 'gho_alice', refresh_token: 'ghr_alice', expires_at: '2099-01-01T00:00:00.000Z' },
      end_user: { id: 'user-alice', email: 'alice@example.com' },
    });
    await importConnection({ provider_config_key: 'gh', connection_id: 'bob', credentials: { type: 'OAUTH2', access_token: 'gho_bob' } });
    await importConnection({
      provider_config_key: 'ashby',
      connection_id: 'carol',
      credentials: { type: 'API_KEY', api_key: 'ashby-key' },
    });
  });

  it('listConnections: all, by connection id (legacy signature), by end user and by integration', async () => {
    const all = await nango.listConnections();
    expect(all.connections.map((c) => c.connection_id).sort()).toEqual(['alice', 'bob', 'carol']);
    expect((await nango.listConnections('bob')).connections.map((c) => c.connection_id)).toEqual(['bob']);
    const byUser = await nango.listConnections({ userId: 'user-alice' } as Parameters<Nango['listConnections']>[0]);
    expect(byUser.connections.map((c) => c.connection_id)).toEqual(['alice']);
    const byIntegration = await nango.listConnections({ integrationId: 'ashby', limit: 10 } as Parameters<Nango['listConnections']>[0]);
    expect(byIntegration.connections.map((c) => [c.connection_id, c.provider_config_key])).toEqual([['carol', 'ashby']]);
  });

  it('a tag filter Terapi cannot apply is refused (400), not ignored', async () => {
    const r = await failure(nango.listConnections({ tags: { plan: 'pro' } } as Parameters<Nango['listConnections']>[0]));
    expect(r.status).toBe(400);
    expect(r.body.message).toMatch(/^tags\[plan\]/);
  });

  it('getConnection returns the credentials; the refresh token only when asked for', async () => {
    const c = await nango.getConnection('gh', 'alice');
    expect(c).toMatchObject({ connection_id: 'alice', provider_config_key: 'gh', provider: 'github', end_user: { id: 'user-alice' } });
    expect(c.credentials).toMatchObject({ type: 'OAUTH2', access_token: 'gho_alice' });
    expect(c.credentials).not.toHaveProperty('refresh_token');
    const withRefresh = await nango.getConnection('gh', 'alice', false, true);
    expect(withRefresh.credentials).toMatchObject({ access_token: 'gho_alice', refresh_token: 'ghr_alice' });
    expect((await failure(nango.getConnection('gh', 'nobody'))).status).toBe(404);
  });

  it('getToken: the access token of an OAuth connection, the credentials of an API-key one; getRawTokenResponse', async () => {
    expect(await nango.getToken('gh', 'bob')).toBe('gho_bob');
    expect(await nango.getToken('ashby', 'carol')).toMatchObject({ type: 'API_KEY', apiKey: 'ashby-key' });
    expect(await nango.getRawTokenResponse('gh', 'bob')).toEqual(expect.any(Object));
  });

  it('setMetadata replaces, updateMetadata merges, getMetadata reads', async () => {
    await nango.setMetadata('gh', 'alice', { team: 'core', seats: 3 });
    expect(await nango.getMetadata('gh', 'alice')).toEqual({ team: 'core', seats: 3 });
    await nango.updateMetadata('gh', 'alice', { seats: 5, region: 'eu' });
    expect(await nango.getMetadata('gh', 'alice')).toEqual({ team: 'core', seats: 5, region: 'eu' });
    await nango.setMetadata('gh', 'alice', { only: true });
    expect(await nango.getMetadata('gh', 'alice')).toEqual({ only: true });
  });

  it('setMetadata for several connections at once, all or nothing', async () => {
    await nango.setMetadata('gh', ['alice', 'bob'], { plan: 'team' });
    expect(await nango.getMetadata('gh', 'alice')).toEqual({ plan: 'team' });
    expect(await nango.getMetadata('gh', 'bob')).toEqual({ plan: 'team' });
    expect((await failure(nango.updateMetadata('gh', ['alice', 'nobody'], { plan: 'x' }))).status).toBe(404);
    expect(await nango.getMetadata('gh', 'alice')).toEqual({ plan: 'team' });
  });

  it('deleteConnection deletes (its DELETE carries Content-Type: application/json and no body)', async () => {
    const res = await nango.deleteConnection('gh', 'bob');
    expect(res.status).toBe(200);
    expect(await connectionStatus('gh', 'bob')).toBe(404);
    expect((await failure(nango.deleteConnection('gh', 'bob'))).status).toBe(404);
  });
});

describe('connect sessions', () => {
  const session = async (token: string) => {
    const r = await t.call({ method: 'GET', url: '/connect/session', key: token });
    expect(r.statusCode, r.body).toBe(200);
    return r.json().data;
  };

  it('createConnectSession returns a token and the Connect link', async () => {
    const { data } = await nango.createConnectSession({
      end_user: { id: 'user-dave', email: 'dave@example.com', display_name: 'Dave' },
      allowed_integrations: ['gh'],
    });
    expect(data.connect_link).toContain(data.token);
    expect(Date.parse(data.expires_at)).toBeGreaterThan(Date.now());
    expect(await session(data.token)).toMatchObject({
      end_user: { id: 'user-dave', email: 'dave@example.com' },
      allowed_integrations: ['gh'],
      is_reconnect: false,
    });
  });

  it('createConnectSession with the end user given only as tags (end_user_id, end_user_email)', async () => {
    const { data } = await nango.createConnectSession({
      tags: { end_user_id: 'user-erin', end_user_email: 'erin@example.com', plan: 'pro' },
    });
    expect(await session(data.token)).toMatchObject({ end_user: { id: 'user-erin', email: 'erin@example.com' }, tags: { plan: 'pro' } });
    const noUser = await failure(nango.createConnectSession({ tags: { plan: 'pro' } }));
    expect(noUser.status).toBe(400);
    expect(noUser.body.message).toMatch(/^end_user/);
    const badEmail = await failure(nango.createConnectSession({ tags: { end_user_id: 'u', end_user_email: 'not-an-email' } }));
    expect(badEmail.status).toBe(400);
    expect(badEmail.body.message).toMatch(/^tags\.end_user_email/);
  });

  it('createReconnectSession for an existing connection', async () => {
    const { data } = await nango.createReconnectSession({ connection_id: 'alice', integration_id: 'gh' });
    expect(await session(data.token)).toMatchObject({ is_reconnect: true, allowed_integrations: ['gh'], end_user: { id: 'user-alice' } });
    expect((await failure(nango.createReconnectSession({ connection_id: 'nobody', integration_id: 'gh' }))).status).toBe(404);
  });
});

describe('an empty body with a JSON content type', () => {
  it('is no body for routes that take none, and still a 400 naming body where one is required', async () => {
    await importConnection({ provider_config_key: 'gh', connection_id: 'frank', credentials: { type: 'OAUTH2', access_token: 'f' } });
    const json = { 'content-type': 'application/json' };
    const del = await t.call({ method: 'DELETE', url: '/connection/frank?provider_config_key=gh', headers: json, payload: '' });
    expect(del.statusCode, del.body).toBeLessThan(300);
    expect(await connectionStatus('gh', 'frank')).toBe(404);

    const before = (await t.call({ method: 'GET', url: '/connections' })).json().connections.length;
    const post = await t.call({ method: 'POST', url: '/connections', headers: json, payload: '' });
    expect(post.statusCode).toBe(400);
    expect(post.json()).toMatchObject({ error: 'invalid_request', details: [{ field: 'body' }] });
    expect(post.json().message).toMatch(/^Invalid body: body/);
    expect((await t.call({ method: 'GET', url: '/connections' })).json().connections.length).toBe(before);
  });

  it('leaves malformed and poisoned JSON refused as before', async () => {
    const json = { 'content-type': 'application/json' };
    const bad = await t.call({ method: 'POST', url: '/connections', headers: json, payload: '{"provider_config_key":' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error).toBe('invalid_json');
    const proto = await t.call({
      method: 'POST',
      url: '/connections',
      headers: json,
      payload: '{"provider_config_key":"gh","__proto__":{"x":1}}',
    });
    expect(proto.statusCode).toBe(400);
  });
});
