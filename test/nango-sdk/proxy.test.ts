/**
 * Nango's Node SDK proxy methods against Terapi: `proxy`, `get`, `post`, `patch`, `put` and
 * `delete` reach the provider with the connection's credentials, exactly as a backend written
 * against Nango calls them after changing the host.
 */
import type { Nango } from '@nangohq/node';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { startProxyTarget, type ProxyTarget } from '../fixtures/providers/proxy-target.js';
import { failure, sdkFor } from './sdk.js';

let t: TestApp;
let nango: Nango;
let target: ProxyTarget;
const ids = { connectionId: 'user-42', providerConfigKey: 'github' };

interface Echo {
  method: string;
  path: string;
  query: string;
  headers: Record<string, string>;
  body: string;
}

beforeAll(async () => {
  target = await startProxyTarget();
  t = await createTestApp({ config: { allowProviderUrlOverrides: true } });
  const i = await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: 'github', provider: 'github', api_base_url: target.url },
  });
  expect(i.statusCode, i.body).toBe(200);
  const c = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { provider_config_key: 'github', connection_id: 'user-42', credentials: { type: 'OAUTH2', access_token: 'gho_sdk' } },
  });
  expect(c.statusCode, c.body).toBe(200);
  target.expect = { header: ['authorization', 'Bearer gho_sdk'] };
  nango = await sdkFor(t);
});
afterAll(async () => {
  await t?.close();
  await target?.close();
});

it('proxy and get: path, params and custom headers reach the provider with the token', async () => {
  const viaProxy = await nango.proxy<Echo>({
    method: 'GET',
    endpoint: '/echo/user/repos',
    params: { per_page: '2' },
    headers: { 'X-GitHub-Api-Version': '2022-11-28' },
    ...ids,
  });
  expect(viaProxy.status).toBe(200);
  expect(viaProxy.data).toMatchObject({ method: 'GET', path: '/echo/user/repos', query: '?per_page=2' });
  expect(viaProxy.data.headers).toMatchObject({ authorization: 'Bearer gho_sdk', 'x-github-api-version': '2022-11-28' });
  expect(JSON.stringify(viaProxy.data.headers)).not.toContain(t.env.key);

  const viaGet = await nango.get<Echo>({ endpoint: 'echo/user', ...ids });
  expect(viaGet.data).toMatchObject({ method: 'GET', path: '/echo/user' });
});

it('post, patch and put send their JSON data; delete sends none', async () => {
  for (const [name, send] of [
    ['POST', (c: Parameters<Nango['post']>[0]) => nango.post<Echo>(c)],
    ['PATCH', (c: Parameters<Nango['patch']>[0]) => nango.patch<Echo>(c)],
    ['PUT', (c: Parameters<Nango['put']>[0]) => nango.put<Echo>(c)],
  ] as const) {
    const res = await send({ endpoint: '/echo/issues', data: { title: `via ${name}`, labels: ['bug'] }, ...ids });
    expect(res.data.method).toBe(name);
    expect(JSON.parse(res.data.body)).toEqual({ title: `via ${name}`, labels: ['bug'] });
    expect(res.data.headers['content-type']).toContain('application/json');
  }
  const deleted = await nango.delete<Echo>({ endpoint: '/echo/issues/1', ...ids });
  expect(deleted.data).toMatchObject({ method: 'DELETE', path: '/echo/issues/1', body: '' });
});

it("retries, and the provider's errors as the SDK reports them", async () => {
  const retried = await nango.get<{ attempt: number }>({ endpoint: '/flaky/sdk?fail=1&status=503&retry_after=0', retries: 2, ...ids });
  expect(retried.data.attempt).toBe(2);

  const providerError = await failure(nango.get({ endpoint: '/status/404', ...ids }));
  expect(providerError).toMatchObject({ status: 404, body: { message: 'answered 404' } });

  const own = await failure(nango.get({ endpoint: '/echo', connectionId: 'nobody', providerConfigKey: 'github' }));
  expect(own.status).toBe(404);
  expect(own.body.error).toBe('not_found');
});
