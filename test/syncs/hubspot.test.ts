import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { allRecords, connectFake, enable, recordsPage, syncStatus, until, waitForRun } from '../helpers/syncs.js';
import { type FakeHubspot, type RecordedRequest, startFakeHubspot } from '../fixtures/providers/hubspot.js';

let t: TestApp;
let hs: FakeHubspot;
const KEY = 'hubspot';
const CONN = 'acme';
const CONTACTS = '/crm/v3/objects/contacts';
const SEARCH = '/crm/v3/objects/contacts/search';
const COMPANIES = '/crm/v3/objects/companies';

type Run = {
  id: string;
  status: string;
  trigger: string;
  added: number;
  updated: number;
  deleted: number;
  error: { message: string; upstream?: { status: number; body: string } } | null;
};
const runsOf = async (name: string, key = KEY) => {
  const r = await t.call({ method: 'GET', url: `/sync/${CONN}/${name}/runs?provider_config_key=${key}` });
  expect(r.statusCode, r.body).toBe(200);
  return r.json().runs as Run[];
};
const triggerSync = async (name: string, key = KEY) => {
  const r = await t.call({
    method: 'POST',
    url: '/sync/trigger',
    payload: { connection_id: CONN, provider_config_key: key, syncs: [name] },
  });
  expect(r.statusCode, r.body).toBe(200);
};
const since = (from: number, method: string, path: string, fake = hs) =>
  fake.controls.requests.slice(from).filter((r) => r.method === method && r.path === path);
/** The lastmodifieddate lower bound of a search request. */
const searchFilter = (r: RecordedRequest) =>
  (r.body as { filterGroups: { filters: { propertyName: string; operator: string; value: string }[] }[] }).filterGroups[0]!.filters[0]!;
const contactByEmail = (email: string) => [...hs.state.contacts.values()].find((c) => c.properties.email === email)!;
const companyByName = (name: string) => [...hs.state.companies.values()].find((c) => c.properties.name === name)!;
const newestModified = () =>
  Math.max(...[...hs.state.contacts.values()].filter((c) => !c.archived).map((c) => Date.parse(c.properties.lastmodifieddate!)));

beforeAll(async () => {
  hs = await startFakeHubspot();
  hs.controls.seed({
    contacts: [
      {
        email: 'Grace@Example.test',
        firstname: 'Grace',
        lastname: 'Hopper',
        phone: '+1 555 0100',
        company: 'US Navy',
        lifecyclestage: 'customer',
        jobtitle: 'Rear Admiral',
      },
      // HubSpot sends "" (or null) for cleared properties: null in the model.
      { email: 'blank@example.test', firstname: '', lastname: null },
    ],
    companies: [{ name: 'Initech', domain: 'initech.example', industry: 'COMPUTER_SOFTWARE', city: 'Austin', country: 'United States' }],
  });
  // 250 contacts (three list pages of 100), 150 companies (two).
  hs.controls.seed({ contacts: 248, companies: 149 });
  t = await createTestApp({ workers: true, config: { allowProviderUrlOverrides: true } });
  await connectFake(t, { key: KEY, provider: 'hubspot', baseUrl: hs.url, token: hs.token, connectionId: CONN });
});
afterAll(async () => {
  await t?.close();
  await hs?.close();
});

describe('HubSpot contacts (incremental sync)', () => {
  let firstCursor: string | undefined;
  let checkpoint: number;

  it('lists every contact on the first run and maps its properties', async () => {
    const fn = await enable(t, KEY, 'contacts');
    expect(fn).toMatchObject({
      name: 'contacts',
      sync_type: 'incremental',
      frequency: '15m',
      models: ['HubspotContact'],
      auto_start: true,
    });
    const s = await waitForRun(t, KEY, CONN, 'contacts');
    expect(s).toMatchObject({ status: 'success', records_count: 250, error: null });

    // The first run lists (no search), 100 at a time, archived ones left out.
    const lists = since(0, 'GET', CONTACTS);
    expect(lists).toHaveLength(3);
    expect(since(0, 'POST', SEARCH)).toHaveLength(0);
    expect(lists.every((r) => r.query.get('limit') === '100' && r.query.get('archived') === 'false')).toBe(true);
    expect(lists[0]!.query.get('properties')).toBe('email,firstname,lastname,phone,company,lifecyclestage');
    expect(lists.every((r) => r.headers.authorization === `Bearer ${hs.token}`)).toBe(true);

    const { records, cursor } = await allRecords(t, KEY, CONN, 'HubspotContact', { limit: 100 });
    expect(records).toHaveLength(250);
    expect(new Set(records.map((r) => r.id))).toEqual(new Set(hs.state.contacts.keys()));
    expect(records.every((r) => r._nango_metadata.last_action === 'ADDED')).toBe(true);
    const grace = contactByEmail('grace@example.test');
    expect(records.find((r) => r.id === grace.id)).toEqual({
      id: grace.id,
      email: 'grace@example.test',
      firstname: 'Grace',
      lastname: 'Hopper',
      phone: '+1 555 0100',
      company: 'US Navy',
      lifecyclestage: 'customer',
      createdAt: grace.createdAt,
      updatedAt: grace.updatedAt,
      archived: false,
      _nango_metadata: expect.objectContaining({ last_action: 'ADDED', deleted_at: null }),
    });
    expect(records.find((r) => r.email === 'blank@example.test')).toMatchObject({
      firstname: null,
      lastname: null,
      phone: null,
      company: null,
      lifecyclestage: null,
    });
    firstCursor = cursor;
    checkpoint = newestModified();
    const [run] = await runsOf('contacts');
    expect(run).toMatchObject({ status: 'success', added: 250, updated: 0, deleted: 0 });
  });

  it('the next run searches from the checkpoint; an update, an archive and a new contact are exactly the changes in the feed', async () => {
    const before = await syncStatus(t, KEY, CONN, 'contacts');
    const ids = [...hs.state.contacts.keys()];
    const updated = hs.controls.updateContact(ids[5]!, { firstname: 'Changed', lifecyclestage: 'lead' });
    const archived = hs.controls.archiveContact(ids[6]!);
    const added = hs.controls.addContact({ email: 'new@example.test', firstname: 'New' });
    const mark = hs.controls.requests.length;
    await triggerSync('contacts');
    const s = await waitForRun(t, KEY, CONN, 'contacts', before.last_sync_date);
    expect(s).toMatchObject({ status: 'success', records_count: 250, error: null });

    // Incremental: one search with the lastmodifieddate filter from the checkpoint, oldest change first; no full list.
    const searches = since(mark, 'POST', SEARCH);
    expect(searches).toHaveLength(1);
    expect(searches[0]!.body).toMatchObject({
      filterGroups: [{ filters: [{ propertyName: 'lastmodifieddate', operator: 'GT', value: String(checkpoint) }] }],
      sorts: [{ propertyName: 'lastmodifieddate', direction: 'ASCENDING' }],
      limit: 100,
    });
    // Archived contacts (which search never returns) are listed on their own.
    expect(since(mark, 'GET', CONTACTS).map((r) => r.query.get('archived'))).toEqual(['true']);

    const { records } = await allRecords(t, KEY, CONN, 'HubspotContact', { cursor: firstCursor });
    expect(records.map((r) => [r.id, r._nango_metadata.last_action]).sort()).toEqual(
      [
        [updated.id, 'UPDATED'],
        [archived.id, 'DELETED'],
        [added.id, 'ADDED'],
      ].sort(),
    );
    expect(records.find((r) => r.id === updated.id)).toMatchObject({
      firstname: 'Changed',
      lifecyclestage: 'lead',
      updatedAt: updated.updatedAt,
    });
    expect(records.find((r) => r.id === added.id)).toMatchObject({
      email: 'new@example.test',
      firstname: 'New',
      lastname: null,
      archived: false,
    });
    expect(records.find((r) => r.id === archived.id)!._nango_metadata.deleted_at).toEqual(expect.any(String));
    const [run] = await runsOf('contacts');
    expect(run).toMatchObject({ status: 'success', trigger: 'manual', added: 1, updated: 1, deleted: 1 });
    checkpoint = Date.parse(added.updatedAt);
  });

  it('with nothing changed, the search starts after the newest change seen and rewrites nothing', async () => {
    const before = await syncStatus(t, KEY, CONN, 'contacts');
    const mark = hs.controls.requests.length;
    await triggerSync('contacts');
    await waitForRun(t, KEY, CONN, 'contacts', before.last_sync_date);
    const searches = since(mark, 'POST', SEARCH);
    expect(searches).toHaveLength(1);
    expect(searchFilter(searches[0]!).value).toBe(String(checkpoint));
    const [run] = await runsOf('contacts');
    expect(run).toMatchObject({ status: 'success', added: 0, updated: 0, deleted: 0 });
  });

  it('reset lists every contact again (no search) and deletes the contacts gone for good', async () => {
    const before = await syncStatus(t, KEY, CONN, 'contacts');
    // A GDPR delete: the contact is neither listed nor archived, only a full listing notices.
    const purged = [...hs.state.contacts.values()].find((c) => !c.archived && c.properties.email?.startsWith('contact'))!;
    hs.state.contacts.delete(purged.id);
    const mark = hs.controls.requests.length;
    const r = await t.call({
      method: 'POST',
      url: '/sync/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, syncs: ['contacts'], reset: true },
    });
    expect(r.statusCode, r.body).toBe(200);
    const s = await waitForRun(t, KEY, CONN, 'contacts', before.last_sync_date);
    expect(s).toMatchObject({ status: 'success', records_count: 249, error: null });
    expect(since(mark, 'POST', SEARCH)).toHaveLength(0);
    expect(since(mark, 'GET', CONTACTS).map((q) => q.query.get('archived'))).toEqual(['false', 'false', 'false']);
    const [run] = await runsOf('contacts');
    expect(run).toMatchObject({ status: 'success', added: 0, updated: 0, deleted: 1 });
    const deleted = (await recordsPage(t, KEY, CONN, 'model=HubspotContact&filter=deleted'))
      .json()
      .records.map((x: { id: string }) => x.id);
    expect(deleted.sort()).toEqual([purged.id, [...hs.state.contacts.values()].find((c) => c.archived)!.id].sort());
  });

  it('waits out 429s (with and without Retry-After) and succeeds', async () => {
    const before = await syncStatus(t, KEY, CONN, 'contacts');
    const edited = hs.controls.updateContact([...hs.state.contacts.keys()][9]!, { phone: '+33 1 23 45 67 89' });
    const mark = hs.controls.requests.length;
    // Three in a row on the first call (test config: 3 retries per call).
    hs.controls.rateLimitNext(2);
    hs.controls.rateLimitNext(1, { retryAfterSeconds: 1 });
    const t0 = Date.now();
    await triggerSync('contacts');
    const s = await waitForRun(t, KEY, CONN, 'contacts', before.last_sync_date);
    expect(s).toMatchObject({ status: 'success', error: null });
    expect(Date.now() - t0).toBeGreaterThanOrEqual(950);
    const searches = since(mark, 'POST', SEARCH);
    expect(searches.map((r) => r.status)).toEqual([429, 429, 429, 200]);
    expect(new Set(searches.map((r) => JSON.stringify(r.body))).size).toBe(1);
    const [run] = await runsOf('contacts');
    expect(run).toMatchObject({ status: 'success', added: 0, updated: 1, deleted: 0 });
    expect((await recordsPage(t, KEY, CONN, `model=HubspotContact&ids=${edited.id}`)).json().records[0]).toMatchObject({
      phone: '+33 1 23 45 67 89',
    });
  });
});

describe('HubSpot companies (full sync)', () => {
  let firstCursor: string | undefined;

  it('lists every company and maps its properties', async () => {
    const fn = await enable(t, KEY, 'companies', { auto_start: true });
    expect(fn).toMatchObject({ sync_type: 'full', auto_start: true, models: ['HubspotCompany'] });
    const s = await waitForRun(t, KEY, CONN, 'companies');
    expect(s).toMatchObject({ status: 'success', records_count: 150, error: null });
    const lists = since(0, 'GET', COMPANIES);
    expect(lists).toHaveLength(2);
    expect(lists[0]!.query.get('properties')).toBe('name,domain,industry,city,country');
    expect(lists[1]!.query.get('after')).toEqual(expect.stringMatching(/^\d+$/));
    const { records, cursor } = await allRecords(t, KEY, CONN, 'HubspotCompany');
    expect(records).toHaveLength(150);
    const initech = companyByName('Initech');
    expect(records.find((r) => r.id === initech.id)).toEqual({
      id: initech.id,
      name: 'Initech',
      domain: 'initech.example',
      industry: 'COMPUTER_SOFTWARE',
      city: 'Austin',
      country: 'United States',
      createdAt: initech.createdAt,
      updatedAt: initech.updatedAt,
      _nango_metadata: expect.objectContaining({ last_action: 'ADDED' }),
    });
    expect(records.find((r) => r.id !== initech.id)).toMatchObject({ industry: null, city: null, country: null });
    firstCursor = cursor;
  });

  it('a run that fails partway deletes nothing; the next successful run deletes the companies it did not see', async () => {
    const before = await syncStatus(t, KEY, CONN, 'companies');
    const initech = companyByName('Initech');
    Object.assign(initech.properties, { city: 'Dallas' });
    const ids = [...hs.state.companies.keys()];
    // Archived in HubSpot: gone from the (archived=false) list.
    const gone = hs.state.companies.get(ids[3]!)!;
    gone.archived = true;
    hs.controls.seed({ companies: [{ name: 'Newco' }] });
    const newco = companyByName('Newco');

    // The token is revoked once the first page is answered: page 2 answers 401.
    const token = hs.token;
    const mark = hs.controls.requests.length;
    hs.controls.delayMs = 300;
    try {
      await triggerSync('companies');
      await until('the first page answered', async () => (hs.controls.requests[mark]?.status ?? 0) > 0, undefined, 5);
      hs.controls.setToken('pat-revoked');
    } finally {
      hs.controls.delayMs = 0;
    }
    const failed = await waitForRun(t, KEY, CONN, 'companies', before.last_sync_date);
    hs.controls.setToken(token);
    expect(failed).toMatchObject({ status: 'error', records_count: 150 });
    expect(failed.error).toMatch(/401/);
    expect(since(mark, 'GET', COMPANIES).map((r) => r.status)).toEqual([200, 401]);
    const [failedRun] = await runsOf('companies');
    expect(failedRun).toMatchObject({
      status: 'error',
      deleted: 0,
      error: { upstream: { status: 401, body: expect.stringContaining('INVALID_AUTHENTICATION') } },
    });
    expect((await recordsPage(t, KEY, CONN, 'model=HubspotCompany&filter=deleted')).json().records).toHaveLength(0);

    await triggerSync('companies');
    const ok = await waitForRun(t, KEY, CONN, 'companies', failed.last_sync_date);
    expect(ok).toMatchObject({ status: 'success', records_count: 150, error: null });
    const { records } = await allRecords(t, KEY, CONN, 'HubspotCompany', { cursor: firstCursor });
    expect(records.map((r) => [r.id, r._nango_metadata.last_action]).sort()).toEqual(
      [
        [initech.id, 'UPDATED'],
        [gone.id, 'DELETED'],
        [newco.id, 'ADDED'],
      ].sort(),
    );
    expect(records.find((r) => r.id === initech.id)).toMatchObject({ city: 'Dallas' });
    const [okRun] = await runsOf('companies');
    expect(okRun).toMatchObject({ status: 'success', added: 1, deleted: 1 });
  });
});

describe('HubSpot create-contact (action)', () => {
  beforeAll(async () => {
    await enable(t, KEY, 'create-contact');
  });
  const create = (input: Record<string, unknown>) =>
    t.call({
      method: 'POST',
      url: '/action/trigger',
      payload: { connection_id: CONN, provider_config_key: KEY, action_name: 'create-contact', input },
    });

  it('creates the contact and answers with its id, email and creation time', async () => {
    const mark = hs.controls.requests.length;
    const r = await create({ email: 'Ada@Example.test', firstname: 'Ada', company: 'Analytical Engines' });
    expect(r.statusCode, r.body).toBe(200);
    const created = contactByEmail('ada@example.test');
    expect(r.json()).toEqual({
      success: true,
      action_name: 'create-contact',
      error: null,
      output: { id: created.id, email: 'ada@example.test', createdAt: created.createdAt },
    });
    // Only the given properties are sent.
    expect(since(mark, 'POST', CONTACTS).map((q) => q.body)).toEqual([
      { properties: { email: 'Ada@Example.test', firstname: 'Ada', company: 'Analytical Engines' } },
    ]);
    expect(created.properties).toMatchObject({ firstname: 'Ada', company: 'Analytical Engines' });
  });

  it('refuses input that fails the schema (400 naming the field) without calling HubSpot', async () => {
    const mark = hs.controls.requests.length;
    const cases: [Record<string, unknown>, string][] = [
      [{}, 'input.email'],
      [{ email: 'not-an-email' }, 'input.email'],
      [{ email: 'x@example.test', firstname: '' }, 'input.firstname'],
      [{ email: 'x@example.test', phone: 42 }, 'input.phone'],
    ];
    for (const [input, field] of cases) {
      const r = await create(input);
      expect(r.statusCode, r.body).toBe(400);
      expect(r.json().message.startsWith(`${field}: `), r.body).toBe(true);
      expect(r.json().details[0].field).toBe(field);
    }
    expect(hs.controls.requests.length).toBe(mark);
  });

  it('answers 424 with the upstream 409 when the email already exists', async () => {
    const count = hs.state.contacts.size;
    const grace = contactByEmail('grace@example.test');
    const r = await create({ email: 'GRACE@example.test', firstname: 'Other' });
    expect(r.statusCode, r.body).toBe(424);
    const body = r.json();
    expect(body).toMatchObject({
      error: 'provider_error',
      action_name: 'create-contact',
      message: expect.stringContaining('409'),
      upstream: { status: 409, body: expect.stringContaining(`Contact already exists. Existing ID: ${grace.id}`) },
    });
    expect(JSON.parse(body.upstream.body)).toMatchObject({ status: 'error', category: 'CONFLICT' });
    const run = await t.call({ method: 'GET', url: `/action/${body.run_id}` });
    expect(run.json()).toMatchObject({ status: 'error', success: false, upstream: { status: 409 } });
    expect(hs.state.contacts.size).toBe(count);
  });

  it('a contact created by the action arrives with the next incremental run', async () => {
    const before = await syncStatus(t, KEY, CONN, 'contacts');
    const { cursor } = await allRecords(t, KEY, CONN, 'HubspotContact');
    await triggerSync('contacts');
    await waitForRun(t, KEY, CONN, 'contacts', before.last_sync_date);
    const { records } = await allRecords(t, KEY, CONN, 'HubspotContact', { cursor });
    expect(records.map((r) => [r.email, r._nango_metadata.last_action])).toEqual([['ada@example.test', 'ADDED']]);
  });
});

describe('HubSpot search past its 10,000-result cap', () => {
  it('restarts the search from the last timestamp seen instead of paging past 10,000', async () => {
    const KEY2 = 'hubspot-big';
    const big = await startFakeHubspot({ contacts: 5 });
    try {
      await connectFake(t, { key: KEY2, provider: 'hubspot', baseUrl: big.url, token: big.token, connectionId: CONN });
      await enable(t, KEY2, 'contacts');
      const first = await waitForRun(t, KEY2, CONN, 'contacts');
      expect(first.records_count).toBe(5);
      // A bulk import: 10,050 contacts, each with its own lastmodifieddate.
      const added = Array.from({ length: 10_050 }, (_, i) => big.controls.addContact({ email: `bulk${i}@example.test` }));
      const mark = big.controls.requests.length;
      await triggerSync('contacts', KEY2);
      const s = await waitForRun(t, KEY2, CONN, 'contacts', first.last_sync_date);
      expect(s).toMatchObject({ status: 'success', records_count: 10_055, error: null });
      const searches = since(mark, 'POST', SEARCH, big);
      expect(searches.every((r) => r.status === 200)).toBe(true);
      const afters = searches.map((r) => (r.body as { after?: string }).after);
      // 100 pages of 100 (after 0…9900), then a new query (no after) from 1 ms before the 10,000th change.
      expect(afters.slice(0, 100)).toEqual([undefined, ...Array.from({ length: 99 }, (_, i) => String((i + 1) * 100))]);
      expect(afters[100]).toBeUndefined();
      expect(searchFilter(searches[100]!).value).toBe(String(Date.parse(added[9_999]!.updatedAt) - 1));
      expect(searches).toHaveLength(101);
      const [run] = await runsOf('contacts', KEY2);
      expect(run).toMatchObject({ status: 'success', added: 10_050, updated: 0, deleted: 0 });
    } finally {
      await big.close();
    }
  });
});
