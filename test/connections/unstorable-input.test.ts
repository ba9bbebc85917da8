import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';

let t: TestApp;
beforeAll(async () => {
  t = await createTestApp();
  for (const payload of [
    { provider_config_key: 'sendgrid', provider: 'sendgrid' },
    { provider_config_key: 'github', provider: 'github', oauth_client_id: 'id', oauth_client_secret: 'secret' },
  ]) {
    const r = await t.call({ method: 'POST', url: '/integration', payload });
    expect(r.statusCode, r.body).toBe(200);
  }
  const base = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { connection_id: 'base', provider_config_key: 'sendgrid', credentials: { api_key: 'k' }, metadata: { kept: true } },
  });
  expect(base.statusCode, base.body).toBe(200);
});
afterAll(async () => t?.close());

/** Sends a JSON text as is, so it can carry escapes (`\u0000`, `\ud800`) a JS object cannot round-trip. */
const raw = (method: 'POST' | 'PATCH', url: string, json: string) =>
  t.call({ method, url, headers: { 'content-type': 'application/json' }, payload: json });

function expectRefused(
  r: { statusCode: number; body: string; json(): { error: string; message: string; details: { field: string }[] } },
  field: string,
) {
  expect(r.statusCode, r.body).toBe(400);
  expect(r.json().error).toBe('invalid_request');
  expect(r.json().details[0]!.field).toBe(field);
  expect(r.json().message).toContain(field);
}

const deep = (levels: number) => `${'{"a":'.repeat(levels)}1${'}'.repeat(levels)}`;

describe('strings and keys the database cannot store', () => {
  it('refuses a NUL or an unpaired surrogate in imported metadata and writes nothing', async () => {
    expectRefused(
      await raw(
        'POST',
        '/connection',
        '{"connection_id":"nul","provider_config_key":"sendgrid","credentials":{"api_key":"k"},"metadata":{"note":"a\\u0000b"}}',
      ),
      'metadata.note',
    );
    expectRefused(
      await raw(
        'POST',
        '/connection',
        '{"connection_id":"sur","provider_config_key":"sendgrid","credentials":{"api_key":"k"},"metadata":{"list":["ok","\\ud800"]}}',
      ),
      'metadata.list.1',
    );
    // A bad key names the object holding it.
    expectRefused(
      await raw(
        'POST',
        '/connection',
        '{"connection_id":"key","provider_config_key":"sendgrid","credentials":{"api_key":"k"},"metadata":{"\\udc00x":1}}',
      ),
      'metadata',
    );
    for (const id of ['nul', 'sur', 'key']) {
      expect((await t.call({ method: 'GET', url: `/connection/${id}?provider_config_key=sendgrid` })).statusCode).toBe(404);
    }
    // A surrogate pair (an emoji) is a real character and is stored.
    const emoji = await raw(
      'POST',
      '/connection',
      '{"connection_id":"emoji","provider_config_key":"sendgrid","credentials":{"api_key":"k"},"metadata":{"mood":"\\ud83d\\ude00"}}',
    );
    expect(emoji.statusCode, emoji.body).toBe(200);
    expect(emoji.json().metadata).toEqual({ mood: '😀' });
  });

  it('refuses them in metadata updates, native and Nango-compatible, leaving the metadata as it was', async () => {
    expectRefused(await raw('PATCH', '/connection/base/metadata?provider_config_key=sendgrid', '{"x":"\\u0000"}'), 'x');
    expectRefused(await raw('POST', '/v1/connections/base/metadata?provider_config_key=sendgrid', '{"x":{"y":"\\ud800"}}'), 'x.y');
    expectRefused(
      await raw('POST', '/connection/metadata', '{"connection_id":"base","provider_config_key":"sendgrid","metadata":{"x":"\\u0000"}}'),
      'metadata.x',
    );
    expectRefused(
      await raw('PATCH', '/connection/metadata', '{"connection_id":"base","provider_config_key":"sendgrid","metadata":{"\\u0000":1}}'),
      'metadata',
    );
    const got = await t.call({ method: 'GET', url: '/connection/base?provider_config_key=sendgrid' });
    expect(got.json().metadata).toEqual({ kept: true });
  });

  it('refuses them in tags, end users, display names and integration params', async () => {
    expectRefused(
      await raw(
        'POST',
        '/connections',
        '{"connection_id":"tag","provider_config_key":"sendgrid","credentials":{"api_key":"k"},"tags":{"plan":"p\\u0000"}}',
      ),
      'tags.plan',
    );
    expectRefused(
      await raw(
        'POST',
        '/connection',
        '{"connection_id":"eu","provider_config_key":"sendgrid","credentials":{"api_key":"k"},"end_user":{"id":"u\\ud800"}}',
      ),
      'end_user.id',
    );
    expectRefused(
      await raw('POST', '/integration', '{"provider_config_key":"sg2","provider":"sendgrid","display_name":"Send\\u0000Grid"}'),
      'display_name',
    );
    expectRefused(
      await raw('POST', '/integration', '{"provider_config_key":"sg3","provider":"sendgrid","params":{"region":"\\udfff"}}'),
      'params.region',
    );
    expectRefused(await raw('PATCH', '/integrations/sendgrid', '{"display_name":"x\\u0000"}'), 'display_name');
    expectRefused(
      await raw('POST', '/connect/sessions', '{"end_user":{"id":"u1","display_name":"Ada\\u0000"},"allowed_integrations":["sendgrid"]}'),
      'end_user.display_name',
    );
    expectRefused(
      await raw('POST', '/connect/sessions', '{"end_user":{"id":"u1","organization":{"id":"o\\ud800"}}}'),
      'end_user.organization.id',
    );
    for (const key of ['sg2', 'sg3']) expect((await t.call({ method: 'GET', url: `/integration/${key}` })).statusCode).toBe(404);
    expect((await t.call({ method: 'GET', url: '/connection/tag?provider_config_key=sendgrid' })).statusCode).toBe(404);
  });

  it('refuses them in the query string too', async () => {
    const r = await t.call({ method: 'GET', url: '/connection?search=a%00b' });
    expectRefused(r, 'search');
  });
});

describe('deeply nested JSON', () => {
  it('refuses metadata nested 5,000 levels deep with a 400 naming the field', async () => {
    const r = await raw(
      'POST',
      '/connection',
      `{"connection_id":"deep","provider_config_key":"sendgrid","credentials":{"api_key":"k"},"metadata":{"d":${deep(5000)}}}`,
    );
    expect(r.statusCode, r.body).toBe(400);
    expect(r.json().details[0].field).toMatch(/^metadata\.d(\.a)*$/);
    expect(r.json().message).toContain('nested more than 64 levels');
    expect((await t.call({ method: 'GET', url: '/connection/deep?provider_config_key=sendgrid' })).statusCode).toBe(404);
    const patch = await raw('PATCH', '/connection/base/metadata?provider_config_key=sendgrid', `{"d":${deep(5000)}}`);
    expect(patch.statusCode).toBe(400);
    expect(patch.json().details[0].field).toMatch(/^d(\.a)*$/);
  });

  it('still accepts reasonably nested metadata', async () => {
    const r = await raw('PATCH', '/connection/base/metadata?provider_config_key=sendgrid', `{"d":${deep(40)}}`);
    expect(r.statusCode, r.body).toBe(200);
  });
});

describe('routing errors', () => {
  it('answers a path parameter over the length limit with {error, message}, without echoing the URL', async () => {
    const long = 'a'.repeat(1500);
    const r = await t.call({ method: 'GET', url: `/connection/${long}?provider_config_key=sendgrid` });
    expect(r.statusCode).toBe(414);
    expect(Object.keys(r.json()).sort()).toEqual(['error', 'message']);
    expect(r.body).not.toContain('aaaaaaaaaa');
  });

  it('answers a malformed percent-encoding in the path with {error, message}', async () => {
    const r = await t.call({ method: 'GET', url: '/connection/%E0%A4%A?provider_config_key=sendgrid' });
    expect(r.statusCode).toBe(400);
    expect(Object.keys(r.json()).sort()).toEqual(['error', 'message']);
    expect(r.body).not.toContain('%E0');
  });

  it('quotes at most a bounded part of an unknown path', async () => {
    const r = await t.call({ method: 'GET', url: `/nothing-here/${'b'.repeat(5000)}` });
    expect(r.statusCode).toBe(404);
    expect(r.json().message.length).toBeLessThan(200);
  });
});
