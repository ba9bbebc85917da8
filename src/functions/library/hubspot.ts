import { z } from 'zod';
import { defineAction, defineSync, type FunctionDefinition, type Paginator, type SyncContext } from '../define.js';

/** Built-in HubSpot functions, written against the CRM v3 objects and search APIs (`https://api.hubapi.com`). */

// The list endpoints cap `limit` at 100; search accepts 200 but is rate-limited per request, not per record.
const PAGE_SIZE = 100;
// Search never pages past 10,000 results for one query (it answers 400): the sync restarts the query from there.
const SEARCH_RESULT_CAP = 10_000;
// HubSpot stamps lastmodifieddate with its own clock; resuming a little before our start covers a skewed clock.
const CLOCK_SKEW_MS = 5 * 60_000;

const CONTACT_PROPERTIES = ['email', 'firstname', 'lastname', 'phone', 'company', 'lifecyclestage'] as const;
const COMPANY_PROPERTIES = ['name', 'domain', 'industry', 'city', 'country'] as const;

const hubspotId = z.string().min(1).max(32).regex(/^\d+$/);
const timestamp = z.iso.datetime({ offset: true });
const text = z.string().max(65_536).nullable();

export const HubspotContact = z.object({
  id: hubspotId,
  email: z.string().max(320).nullable(),
  firstname: text,
  lastname: text,
  phone: text,
  company: text,
  lifecyclestage: text,
  createdAt: timestamp,
  updatedAt: timestamp,
  archived: z.boolean(),
});

export const HubspotCompany = z.object({
  id: hubspotId,
  name: text,
  domain: text,
  industry: text,
  city: text,
  country: text,
  createdAt: timestamp,
  updatedAt: timestamp,
});

const optionalText = z.string().min(1).max(255).optional();
export const HubspotCreateContactInput = z.object({
  email: z.email().max(254),
  firstname: optionalText,
  lastname: optionalText,
  phone: z.string().min(1).max(64).optional(),
  company: optionalText,
});

export const HubspotCreateContactOutput = z.object({
  id: hubspotId,
  email: z.string().max(320),
  createdAt: timestamp,
});

// The subset of HubSpot's JSON this module reads.
interface HubspotObject {
  id: string;
  properties: Record<string, string | null | undefined>;
  createdAt: string;
  updatedAt: string;
  archived?: boolean;
}
interface SearchPage {
  total: number;
  results: HubspotObject[];
  paging?: { next?: { after?: string } };
}

const listPaginator: Paginator = { type: 'cursor', itemsPath: 'results', cursorPath: 'paging.next.after', cursorParam: 'after' };

// HubSpot sends "" (or null) for cleared properties; the models say null.
const prop = (o: HubspotObject, name: string): string | null => o.properties[name] || null;

function toContact(o: HubspotObject): z.input<typeof HubspotContact> {
  return {
    id: o.id,
    email: prop(o, 'email'),
    firstname: prop(o, 'firstname'),
    lastname: prop(o, 'lastname'),
    phone: prop(o, 'phone'),
    company: prop(o, 'company'),
    lifecyclestage: prop(o, 'lifecyclestage'),
    createdAt: o.createdAt,
    updatedAt: o.updatedAt,
    archived: o.archived ?? false,
  };
}

function toCompany(o: HubspotObject): z.input<typeof HubspotCompany> {
  return {
    id: o.id,
    name: prop(o, 'name'),
    domain: prop(o, 'domain'),
    industry: prop(o, 'industry'),
    city: prop(o, 'city'),
    country: prop(o, 'country'),
    createdAt: o.createdAt,
    updatedAt: o.updatedAt,
  };
}

/** lastmodifieddate in ms since the epoch (search results carry it as a property, list results as updatedAt). */
function modifiedAt(o: HubspotObject): number {
  const ms = Date.parse(prop(o, 'lastmodifieddate') ?? o.updatedAt);
  if (Number.isNaN(ms)) throw new Error(`HubSpot contact ${o.id} has no readable lastmodifieddate`);
  return ms;
}

type ContactsContext = SyncContext<{ HubspotContact: typeof HubspotContact }>;

/** First run (or a full resync): list every contact, then checkpoint where the search should resume. */
async function listAllContacts(ctx: ContactsContext): Promise<void> {
  const startedAt = Date.now();
  let newest = 0;
  let total = 0;
  const req = { path: '/crm/v3/objects/contacts', query: { limit: PAGE_SIZE, properties: CONTACT_PROPERTIES.join(','), archived: false } };
  for await (const page of ctx.http.paginate<HubspotObject>(req, listPaginator)) {
    ctx.signal.throwIfAborted();
    if (page.length > 0) await ctx.batchSave('HubspotContact', page.map(toContact));
    for (const o of page) newest = Math.max(newest, modifiedAt(o));
    total += page.length;
    ctx.log.info('contacts list page saved', { count: page.length, total });
  }
  // The list is in id order: a contact changed while we listed may be behind the cursor already. Resume from the
  // newest change seen, unless that is after the run started, then from the start (changes re-read are idempotent).
  await ctx.saveCheckpoint({ lastModifiedAfter: String(Math.min(newest, startedAt - CLOCK_SKEW_MS)) });
}

/** Incremental run: contacts with lastmodifieddate > `since`, oldest first, checkpointed after every page. */
async function searchContactsSince(ctx: ContactsContext, since: number): Promise<void> {
  let after: string | undefined;
  let total = 0;
  for (;;) {
    ctx.signal.throwIfAborted();
    // A search is a read sent as POST: safe to retry after a 5xx.
    const { data: page } = await ctx.http.request<SearchPage>({
      method: 'POST',
      path: '/crm/v3/objects/contacts/search',
      idempotent: true,
      body: {
        filterGroups: [{ filters: [{ propertyName: 'lastmodifieddate', operator: 'GT', value: String(since) }] }],
        sorts: [{ propertyName: 'lastmodifieddate', direction: 'ASCENDING' }],
        properties: [...CONTACT_PROPERTIES, 'lastmodifieddate'],
        limit: PAGE_SIZE,
        ...(after === undefined ? {} : { after }),
      },
    });
    const results = page.results ?? [];
    total += results.length;
    if (results.length > 0) await ctx.batchSave('HubspotContact', results.map(toContact));
    ctx.log.info('contacts search page saved', { count: results.length, total, since, after: after ?? '0' });
    if (results.length === 0) return;

    const last = modifiedAt(results[results.length - 1]!);
    const next = page.paging?.next?.after;
    if (!next) {
      await ctx.saveCheckpoint({ lastModifiedAfter: String(last) });
      return;
    }
    // Contacts sharing the page's last timestamp may continue on the next page: the checkpoint stays 1 ms before it,
    // so a run cut short here re-reads them rather than skipping them.
    const resumeFrom = Math.max(since, last - 1);
    await ctx.saveCheckpoint({ lastModifiedAfter: String(resumeFrom) });
    if (Number(next) < SEARCH_RESULT_CAP) {
      after = next;
      continue;
    }
    // At the 10,000-result cap: start a new query from the last timestamp seen.
    if (resumeFrom > since) {
      since = resumeFrom;
    } else {
      // 10,000 contacts changed within one millisecond (a bulk import): the only way forward skips the rest of it.
      ctx.log.warn('contacts search restarted past a millisecond holding over 10,000 changes', { lastmodifieddate: last });
      since = last;
    }
    after = undefined;
    ctx.log.info('contacts search restarted at the 10,000-result cap', { since });
  }
}

/**
 * Incremental runs: neither the list (archived=false) nor search returns archived contacts (HubSpot's delete), so
 * the archived ones are listed on their own and their records marked deleted. All of them, every run: the list is
 * not ordered by archivedAt, and deleting a record already deleted (or never synced) changes nothing.
 */
async function deleteArchivedContacts(ctx: ContactsContext): Promise<void> {
  let total = 0;
  const req = { path: '/crm/v3/objects/contacts', query: { limit: PAGE_SIZE, archived: true } };
  for await (const page of ctx.http.paginate<HubspotObject>(req, listPaginator)) {
    ctx.signal.throwIfAborted();
    if (page.length > 0)
      await ctx.batchDelete(
        'HubspotContact',
        page.map((o) => ({ id: o.id })),
      );
    total += page.length;
  }
  ctx.log.info('archived contacts checked', { total });
}

const contacts = defineSync({
  name: 'contacts',
  description: 'Contacts, listed in full on the first run and then searched by lastmodifieddate; contacts archived in HubSpot are deleted.',
  models: { HubspotContact },
  frequency: '15m',
  syncType: 'incremental',
  autoStart: true,
  scopes: ['crm.objects.contacts.read'],
  async exec(ctx) {
    const checkpoint = await ctx.getCheckpoint();
    const since = Number(checkpoint?.lastModifiedAfter ?? Number.NaN);
    if (checkpoint && Number.isSafeInteger(since) && since >= 0) {
      await searchContactsSince(ctx, since);
      return deleteArchivedContacts(ctx);
    }
    if (checkpoint) ctx.log.warn('unreadable checkpoint, listing every contact', { checkpoint });
    return listAllContacts(ctx);
  },
});

const companies = defineSync({
  name: 'companies',
  description: 'Every company (not archived).',
  models: { HubspotCompany },
  frequency: '1h',
  syncType: 'full',
  autoStart: false,
  scopes: ['crm.objects.companies.read'],
  async exec(ctx) {
    let total = 0;
    const req = {
      path: '/crm/v3/objects/companies',
      query: { limit: PAGE_SIZE, properties: COMPANY_PROPERTIES.join(','), archived: false },
    };
    for await (const page of ctx.http.paginate<HubspotObject>(req, listPaginator)) {
      ctx.signal.throwIfAborted();
      if (page.length > 0) await ctx.batchSave('HubspotCompany', page.map(toCompany));
      total += page.length;
      ctx.log.info('companies list page saved', { count: page.length, total });
    }
  },
});

const createContact = defineAction({
  name: 'create-contact',
  description: 'Create a contact. A duplicate email fails with HubSpot\'s 409 CONFLICT ("Existing ID: …").',
  input: HubspotCreateContactInput,
  output: HubspotCreateContactOutput,
  scopes: ['crm.objects.contacts.write'],
  async exec(ctx, input) {
    const properties = Object.fromEntries(Object.entries(input).filter(([, value]) => value !== undefined));
    // A 409 (duplicate email) or 400 (VALIDATION_ERROR) surfaces as ProviderHttpError with HubSpot's body.
    const created = await ctx.http.post<HubspotObject>('/crm/v3/objects/contacts', { properties });
    ctx.log.info('contact created', { id: created.id });
    return { id: created.id, email: prop(created, 'email') ?? input.email, createdAt: created.createdAt };
  },
});

export const hubspotFunctions: FunctionDefinition[] = [contacts, companies, createContact];
