import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { defaultCatalogFile, loadCatalog } from '../../src/providers/catalog.js';
import { providerSchema } from '../../src/providers/schema.js';
import { createTestApp, type TestApp } from '../helpers/app.js';

describe('provider catalog data', () => {
  const raw = parse(readFileSync(defaultCatalogFile, 'utf8')) as { name: string }[];

  it('has a valid shape for every entry', () => {
    for (const entry of raw) {
      const r = providerSchema.safeParse(entry);
      expect(r.success, `${entry.name}: ${r.error?.message}`).toBe(true);
    }
  });

  it('describes at least 60 providers, sorted and unique', () => {
    const names = raw.map((p) => p.name);
    expect(names.length).toBeGreaterThanOrEqual(60);
    expect(new Set(names).size).toBe(names.length);
    expect(names).toEqual([...names].sort());
  });

  it('includes the providers users expect', () => {
    const catalog = loadCatalog();
    for (const name of [
      'github',
      'gitlab',
      'bitbucket',
      'slack',
      'discord',
      'microsoft',
      'google-drive',
      'google-calendar',
      'google-mail',
      'google-sheets',
      'salesforce',
      'hubspot',
      'pipedrive',
      'zoho-crm',
      'notion',
      'airtable',
      'asana',
      'linear',
      'jira',
      'confluence',
      'trello',
      'clickup',
      'monday',
      'zendesk',
      'intercom',
      'freshdesk',
      'shopify',
      'stripe',
      'quickbooks',
      'xero',
      'dropbox',
      'box',
      'figma',
      'calendly',
      'zoom',
      'mailchimp',
      'sendgrid',
      'twilio',
      'docusign',
      'bamboohr',
      'personio',
      'hibob',
      'oauth2',
      'oauth2-cc',
    ]) {
      expect(catalog.get(name), name).toBeDefined();
    }
    expect(catalog.list().filter((p) => p.categories.includes('hr')).length).toBeGreaterThanOrEqual(3);
  });

  it('states well-known facts correctly', () => {
    const c = loadCatalog();
    expect(c.get('github')).toMatchObject({
      auth_mode: 'OAUTH2',
      token_url: 'https://github.com/login/oauth/access_token',
      api_base_url: 'https://api.github.com',
    });
    expect(c.get('slack')).toMatchObject({ authorization_url: 'https://slack.com/oauth/v2/authorize', scope_separator: ',' });
    expect(c.get('notion')?.token_request_auth_method).toBe('client_secret_basic');
    expect(c.get('google-drive')?.authorization_params).toMatchObject({ access_type: 'offline' });
    expect(c.get('salesforce')?.token_response_metadata).toContain('instance_url');
    expect(c.get('stripe')?.auth_mode).toBe('API_KEY');
    expect(c.get('xero')?.refresh_token_rotation).toBe(true);
  });
});

describe('GET /providers', () => {
  let t: TestApp;
  beforeAll(async () => {
    t = await createTestApp();
  });
  afterAll(async () => t?.close());

  it('lists with per-category counts and filters', async () => {
    const all = (await t.call({ method: 'GET', url: '/providers' })).json();
    expect(all.total).toBe(all.data.length);
    expect(all.total).toBeGreaterThanOrEqual(60);
    const crmCount = all.categories.find((c: { category: string }) => c.category === 'crm').count;

    const crm = (await t.call({ method: 'GET', url: '/providers?category=crm' })).json();
    expect(crm.total).toBe(crmCount);
    expect(crm.data.every((p: { categories: string[] }) => p.categories.includes('crm'))).toBe(true);
    expect(crm.data.map((p: { name: string }) => p.name)).toContain('hubspot');

    const apiKeys = (await t.call({ method: 'GET', url: '/providers?auth_mode=API_KEY' })).json();
    expect(apiKeys.data.every((p: { auth_mode: string }) => p.auth_mode === 'API_KEY')).toBe(true);
    expect(apiKeys.categories.reduce((n: number, c: { count: number }) => n + c.count, 0)).toBeGreaterThanOrEqual(apiKeys.total);

    const search = (await t.call({ method: 'GET', url: '/providers?search=GOOGLE' })).json();
    expect(search.data.map((p: { name: string }) => p.name)).toEqual(expect.arrayContaining(['google-drive', 'google-mail']));
  });

  it('filters by install status', async () => {
    await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'hs', provider: 'hubspot' } });
    const installed = (await t.call({ method: 'GET', url: '/providers?status=installed' })).json();
    expect(installed.data).toEqual([expect.objectContaining({ name: 'hubspot', installed: true })]);
    const available = (await t.call({ method: 'GET', url: '/providers?status=available' })).json();
    expect(available.data.find((p: { name: string }) => p.name === 'hubspot')).toBeUndefined();
  });

  it('gets one provider with its facts, 404 for an unknown one, 400 for a bad filter', async () => {
    const zendesk = await t.call({ method: 'GET', url: '/providers/zendesk' });
    expect(zendesk.statusCode).toBe(200);
    expect(zendesk.json().data).toMatchObject({ name: 'zendesk', connection_config: { subdomain: { pattern: expect.any(String) } } });
    expect((await t.call({ method: 'GET', url: '/providers/not-a-provider' })).statusCode).toBe(404);
    const bad = await t.call({ method: 'GET', url: '/providers?category=nonsense' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().details[0].field).toBe('category');
  });
});
