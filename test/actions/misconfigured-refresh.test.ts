import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FakeGithub, startFakeGithub } from '../fixtures/providers/github.js';
import { createTestApp, defaultTestConfig, type TestApp } from '../helpers/app.js';
import { enable } from '../helpers/syncs.js';

/**
 * A connection whose token refresh the configuration forbids is not a connection whose user must
 * authorize again: while its token is still valid, its actions run. Production egress policy here
 * (no private addresses), with the fake GitHub reached through an allowed host name, and a token URL
 * on a loopback address that the policy refuses.
 */

let t: TestApp;
let gh: FakeGithub;
let owner: string;
let repo: string;

beforeAll(async () => {
  gh = await startFakeGithub();
  [owner, repo] = gh.controls.seed({ repos: 1, issuesPerRepo: 1 })[0]!.split('/') as [string, string];
  t = await createTestApp({
    workers: true,
    config: {
      allowProviderUrlOverrides: true,
      egress: { ...defaultTestConfig.egress, allowPrivateNetworks: false, allowedHosts: ['localhost'] },
    },
  });
  const i = await t.call({
    method: 'POST',
    url: '/integration',
    payload: {
      provider_config_key: 'gh',
      provider: 'github',
      oauth_client_id: 'id',
      oauth_client_secret: 'secret',
      api_base_url: `http://localhost:${new URL(gh.url).port}`,
      token_url: 'https://127.0.0.1:9/token',
    },
  });
  expect(i.statusCode, i.body).toBe(200);
  const c = await t.call({
    method: 'POST',
    url: '/connection',
    payload: {
      connection_id: 'c1',
      provider_config_key: 'gh',
      credentials: {
        type: 'OAUTH2',
        access_token: gh.token,
        refresh_token: 'r1',
        expires_at: new Date(Date.now() + 3_600_000).toISOString(),
      },
    },
  });
  expect(c.statusCode, c.body).toBe(200);
  await enable(t, 'gh', 'create-issue');
});
afterAll(async () => {
  await t?.close();
  await gh?.close();
});

describe('an action on a connection whose refresh is misconfigured', () => {
  it('runs with the still-valid token instead of asking for re-authorization', async () => {
    // A forced refresh meets the egress policy: the connection now carries refresh_misconfigured,
    // and the read is still answered with the current, valid token.
    const forced = await t.call({ method: 'GET', url: '/connections/c1?provider_config_key=gh&force_refresh=true' });
    expect(forced.statusCode, forced.body).toBe(200);
    expect(forced.json().credentials.access_token).toBe(gh.token);
    const listed = await t.call({ method: 'GET', url: '/connection?connection_id=c1' });
    expect(listed.statusCode, listed.body).toBe(200);
    expect(JSON.stringify(listed.json())).toContain('refresh_misconfigured');

    const r = await t.call({
      method: 'POST',
      url: '/action/trigger',
      payload: {
        connection_id: 'c1',
        provider_config_key: 'gh',
        action_name: 'create-issue',
        input: { owner, repo, title: 'still works' },
      },
    });
    expect(r.statusCode, r.body).toBe(200);
    expect(r.json()).toMatchObject({ success: true, output: { title: 'still works' } });
    expect(gh.state.issues.filter((x) => x.title === 'still works')).toHaveLength(1);
  });
});
