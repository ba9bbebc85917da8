import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import {
  defineAction,
  defineSync,
  ProviderError,
  ProviderHttpError,
  type Checkpoint,
  type FunctionContextBase,
  type FunctionDefinition,
} from '../define.js';

/** Built-in Linear functions, written against Linear's GraphQL API (`POST https://api.linear.app/graphql`). */

const PAGE_SIZE = 100;
const RATE_LIMIT_RETRIES = 4;
const timestamp = z.iso.datetime({ offset: true });
const linearId = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[A-Za-z0-9-]+$/, 'must be a Linear id');

export const LinearIssue = z.object({
  id: linearId,
  identifier: z.string().max(64),
  title: z.string(),
  description: z.string().nullable(),
  stateName: z.string().max(255),
  /** 0 no priority, 1 urgent, 2 high, 3 medium, 4 low */
  priority: z.number().int().min(0).max(4),
  assigneeId: linearId.nullable(),
  assigneeName: z.string().max(255).nullable(),
  teamKey: z.string().max(32),
  url: z.url(),
  createdAt: timestamp,
  updatedAt: timestamp,
  archivedAt: timestamp.nullable(),
});

interface LinearIssueNode {
  id: string;
  identifier: string;
  title: string;
  description: string | null;
  priority: number;
  url: string;
  createdAt: string;
  updatedAt: string;
  archivedAt: string | null;
  state: { name: string };
  assignee: { id: string; name: string } | null;
  team: { key: string };
}

interface GraphQLError {
  message: string;
  extensions?: { code?: string; userPresentableMessage?: string };
}

/** A GraphQL answer carrying `errors` (Linear answers most of them with HTTP 200, so the HTTP client lets them through). */
export class LinearGraphQLError extends ProviderError {
  readonly codes: string[];
  constructor(readonly errors: GraphQLError[]) {
    super(
      `Linear GraphQL error: ${errors.map((e) => `${e.message}${e.extensions?.code ? ` (${e.extensions.code})` : ''}`).join('; ')}`,
      200,
      JSON.stringify({ errors }),
    );
    this.name = 'LinearGraphQLError';
    this.codes = errors.map((e) => e.extensions?.code ?? '').filter((c) => c !== '');
  }
}

// Linear signals its rate limit with HTTP 400 and `extensions.code: "RATELIMITED"` (not 429), which a generic HTTP
// client does not retry; the reset header is not reachable from here, so back off exponentially.
function isRateLimited(err: unknown): boolean {
  if (err instanceof LinearGraphQLError) return err.codes.includes('RATELIMITED');
  return err instanceof ProviderHttpError && err.status === 400 && err.body.includes('"RATELIMITED"');
}

/** A GraphQL call; queries are reads (retried like a GET), mutations are writes (sent again only if provably not processed). */
async function graphql<T>(
  ctx: FunctionContextBase,
  query: string,
  variables: Record<string, unknown>,
  kind: 'query' | 'mutation' = 'query',
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      const res = await ctx.http.request<{ data?: T | null; errors?: GraphQLError[] }>({
        method: 'POST',
        path: '/graphql',
        body: { query, variables },
        idempotent: kind === 'query',
      });
      if (res.data.errors && res.data.errors.length > 0) throw new LinearGraphQLError(res.data.errors);
      if (res.data.data == null) throw new Error('Linear answered without data nor errors');
      return res.data.data;
    } catch (err) {
      if (attempt >= RATE_LIMIT_RETRIES || !isRateLimited(err)) throw err;
      const waitMs = Math.min(30_000, 1000 * 2 ** attempt);
      ctx.log.warn('linear rate limited, backing off', { waitMs, attempt: attempt + 1 });
      await sleep(waitMs, undefined, { signal: ctx.signal });
    }
  }
}

const ISSUES_QUERY = `query TerapiIssues($first: Int!, $cursor: String, $filter: IssueFilter) {
  issues(first: $first, after: $cursor, filter: $filter, orderBy: updatedAt, includeArchived: true) {
    nodes {
      id identifier title description priority url createdAt updatedAt archivedAt
      state { name }
      assignee { id name }
      team { key }
    }
    pageInfo { hasNextPage endCursor }
  }
}`;

interface IssuesPage {
  issues: { nodes: LinearIssueNode[]; pageInfo: { hasNextPage: boolean; endCursor: string | null } };
}

const toIssue = (n: LinearIssueNode): z.input<typeof LinearIssue> => ({
  id: n.id,
  identifier: n.identifier,
  title: n.title,
  description: n.description,
  stateName: n.state.name,
  priority: n.priority,
  assigneeId: n.assignee?.id ?? null,
  assigneeName: n.assignee?.name ?? null,
  teamKey: n.team.key,
  url: n.url,
  createdAt: n.createdAt,
  updatedAt: n.updatedAt,
  archivedAt: n.archivedAt,
});

const str = (v: Checkpoint[string] | undefined): string | null => (typeof v === 'string' && v !== '' ? v : null);
const maxIso = (a: string | null, b: string): string => (a === null || Date.parse(b) > Date.parse(a) ? b : a);

const issuesSync = defineSync({
  name: 'issues',
  description:
    'Issues of every team the connection can see, archived ones included (archived issues are deleted). Incremental by updatedAt.',
  models: { LinearIssue },
  frequency: '15m',
  syncType: 'incremental',
  autoStart: true,
  scopes: ['read'],
  async exec(ctx) {
    // `orderBy: updatedAt` lists the most recently updated first, so the newest updatedAt seen only becomes the
    // lower bound once the whole listing is done. Until then the checkpoint keeps the old bound, the cursor to resume
    // from and the newest updatedAt seen so far (`pendingUpdatedAfter`). An issue updated mid-run moves before the
    // cursor, and is picked up next run because its updatedAt is above the new bound.
    const saved = await ctx.getCheckpoint();
    const updatedAfter = str(saved?.updatedAfter);
    let cursor = str(saved?.cursor);
    let pending = str(saved?.pendingUpdatedAfter);
    const filter = updatedAfter ? { updatedAt: { gt: updatedAfter } } : undefined;
    let pages = 0;
    for (;;) {
      ctx.signal.throwIfAborted();
      const { issues } = await graphql<IssuesPage>(ctx, ISSUES_QUERY, { first: PAGE_SIZE, cursor, filter });
      const live = issues.nodes.filter((n) => n.archivedAt === null);
      const archived = issues.nodes.filter((n) => n.archivedAt !== null);
      if (live.length > 0) await ctx.batchSave('LinearIssue', live.map(toIssue));
      if (archived.length > 0)
        await ctx.batchDelete(
          'LinearIssue',
          archived.map((n) => ({ id: n.id })),
        );
      for (const n of issues.nodes) pending = maxIso(pending, n.updatedAt);
      pages += 1;
      ctx.log.info('linear issues page', { page: pages, saved: live.length, archived: archived.length });
      const next = issues.pageInfo.hasNextPage ? issues.pageInfo.endCursor : null;
      if (next === null) break;
      cursor = next;
      await ctx.saveCheckpoint({ updatedAfter, cursor, pendingUpdatedAfter: pending });
    }
    await ctx.saveCheckpoint({ updatedAfter: pending ?? updatedAfter, cursor: null, pendingUpdatedAfter: null });
    ctx.log.info('linear issues synced', { pages, updatedAfter: pending ?? updatedAfter });
  },
});

const ISSUE_CREATE_MUTATION = `mutation TerapiIssueCreate($input: IssueCreateInput!) {
  issueCreate(input: $input) {
    success
    issue { id identifier title url }
  }
}`;

const createIssue = defineAction({
  name: 'create-issue',
  description: 'Create an issue in a team.',
  input: z.object({
    teamId: linearId,
    title: z.string().min(1).max(1000),
    description: z.string().max(200_000).optional(),
    priority: z.number().int().min(0).max(4).optional().describe('0 no priority, 1 urgent, 2 high, 3 medium, 4 low'),
  }),
  output: z.object({ id: linearId, identifier: z.string().max(64), title: z.string(), url: z.url() }),
  scopes: ['issues:create'],
  async exec(ctx, input) {
    const { issueCreate } = await graphql<{
      issueCreate: { success: boolean; issue: { id: string; identifier: string; title: string; url: string } | null };
    }>(ctx, ISSUE_CREATE_MUTATION, { input }, 'mutation');
    if (!issueCreate.success || !issueCreate.issue) throw new Error('Linear issueCreate answered success: false');
    const { id, identifier, title, url } = issueCreate.issue;
    ctx.log.info('linear issue created', { identifier });
    return { id, identifier, title, url };
  },
});

export const linearFunctions: FunctionDefinition[] = [issuesSync, createIssue];
