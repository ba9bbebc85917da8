import { z } from 'zod';
import {
  defineAction,
  defineSync,
  ProviderHttpError,
  type Checkpoint,
  type FunctionContextBase,
  type FunctionDefinition,
  type HttpRequest,
  type SyncContext,
} from '../define.js';

/** Built-in GitHub functions, written against the REST API v3 (api.github.com, or a GitHub Enterprise base URL). */

const GITHUB_HEADERS = { Accept: 'application/vnd.github+json', 'X-GitHub-Api-Version': '2022-11-28' };
const PER_PAGE = 100;

// GitHub logins are 1..39 characters, repository names 1..100; bots (`dependabot[bot]`) and the `ghost` user are
// longer or odd, so logins read from records are only length-bounded.
const ownerSchema = z
  .string()
  .min(1)
  .max(39)
  .regex(/^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/, 'must be a GitHub user or organization login');
const repoSchema = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[A-Za-z0-9_.-]+$/, 'must be a repository name');
const fullNameSchema = z
  .string()
  .max(140)
  .regex(/^[A-Za-z0-9-]+\/[A-Za-z0-9_.-]+$/, 'must be owner/name');
const loginField = z.string().min(1).max(100);
const timestamp = z.iso.datetime({ offset: true });

export const GithubIssue = z.object({
  id: z.string().max(20),
  number: z.number().int().positive(),
  title: z.string().max(1024),
  state: z.enum(['open', 'closed']),
  body: z.string().nullable(),
  user_login: loginField.nullable(),
  labels: z.array(z.string().max(100)),
  assignees: z.array(loginField),
  comments: z.number().int().nonnegative(),
  html_url: z.url(),
  repository: fullNameSchema,
  created_at: timestamp,
  updated_at: timestamp,
  closed_at: timestamp.nullable(),
});

export const GithubPullRequest = z.object({
  id: z.string().max(20),
  number: z.number().int().positive(),
  title: z.string().max(1024),
  state: z.enum(['open', 'closed']),
  draft: z.boolean(),
  user_login: loginField.nullable(),
  head_ref: z.string().max(255),
  base_ref: z.string().max(255),
  merged_at: timestamp.nullable(),
  html_url: z.url(),
  repository: fullNameSchema,
  created_at: timestamp,
  updated_at: timestamp,
});

const metadataSchema = z.looseObject({ repositories: z.array(fullNameSchema).max(1000).optional() });

// The subset of GitHub's JSON this module reads.
interface GhUser {
  login: string;
}
interface GhIssue {
  id: number;
  number: number;
  title: string;
  state: 'open' | 'closed';
  body?: string | null;
  user: GhUser | null;
  labels: (string | { name?: string | null })[];
  assignees?: GhUser[] | null;
  comments: number;
  html_url: string;
  created_at: string;
  updated_at: string;
  closed_at: string | null;
  /** present when the "issue" is a pull request */
  pull_request?: unknown;
}
interface GhPull {
  id: number;
  number: number;
  title: string;
  state: 'open' | 'closed';
  draft?: boolean;
  user: GhUser | null;
  head: { ref: string };
  base: { ref: string };
  merged_at: string | null;
  html_url: string;
  created_at: string;
  updated_at: string;
}

const repoPath = (fullName: string, rest: string): string => {
  const [owner = '', repo = ''] = fullName.split('/');
  return `/repos/${encodeURIComponent(owner)}/${encodeURIComponent(repo)}${rest}`;
};

const toIssue = (i: GhIssue, repository: string): z.input<typeof GithubIssue> => ({
  id: String(i.id),
  number: i.number,
  title: i.title,
  state: i.state,
  body: i.body ?? null,
  user_login: i.user?.login ?? null,
  // GitHub's schema allows a label to be a bare string or an object whose name may be null.
  labels: i.labels.map((l) => (typeof l === 'string' ? l : (l.name ?? ''))).filter((n) => n !== ''),
  assignees: (i.assignees ?? []).map((a) => a.login),
  comments: i.comments,
  html_url: i.html_url,
  repository,
  created_at: i.created_at,
  updated_at: i.updated_at,
  closed_at: i.closed_at,
});

const toPullRequest = (p: GhPull, repository: string): z.input<typeof GithubPullRequest> => ({
  id: String(p.id),
  number: p.number,
  title: p.title,
  state: p.state,
  draft: p.draft ?? false,
  user_login: p.user?.login ?? null,
  head_ref: p.head.ref,
  base_ref: p.base.ref,
  merged_at: p.merged_at,
  html_url: p.html_url,
  repository,
  created_at: p.created_at,
  updated_at: p.updated_at,
});

/** `owner/name` of the repositories to sync: the connection metadata's `repositories`, else every repository the token sees. */
async function listRepositories(ctx: FunctionContextBase): Promise<string[]> {
  const metadata = metadataSchema.safeParse(await ctx.getMetadata());
  if (!metadata.success) {
    throw new Error(`connection metadata "repositories" must be a list of "owner/name": ${z.prettifyError(metadata.error)}`);
  }
  const configured = metadata.data.repositories;
  if (configured && configured.length > 0) return [...new Set(configured)];

  // sort=updated is newest first: a repository updated while we list moves to the front and at worst shows up
  // twice (deduplicated by the Set), never skipped.
  const names = new Set<string>();
  const req: HttpRequest = { path: '/user/repos', query: { per_page: PER_PAGE, sort: 'updated' }, headers: GITHUB_HEADERS };
  for await (const page of ctx.http.paginate<{ full_name: string }>(req, { type: 'link' })) {
    ctx.signal.throwIfAborted();
    for (const repo of page) names.add(repo.full_name);
  }
  ctx.log.info('github repositories listed', { count: names.size });
  return [...names];
}

/** A repository that vanished (404) or has issues disabled (410 Gone) is skipped rather than failing every other one. */
function isGoneRepository(err: unknown): err is ProviderHttpError {
  return err instanceof ProviderHttpError && (err.status === 404 || err.status === 410);
}

const maxIso = (a: string | undefined, b: string): string => (a === undefined || Date.parse(b) > Date.parse(a) ? b : a);

/**
 * One repository's issues updated since its checkpoint, oldest first. GitHub's `since` is inclusive and pages are
 * page-number based, so an issue updated mid-run would shift later pages and make us skip one. Instead of following
 * `next` links, each full page restarts the listing at the page's newest `updated_at` (keyset paging); the `next`
 * link is only followed while a whole page shares one `updated_at` (bulk edits), where restarting would not progress.
 */
async function syncRepositoryIssues(
  ctx: SyncContext<{ GithubIssue: typeof GithubIssue }>,
  repository: string,
  checkpoint: Checkpoint,
): Promise<void> {
  const key = `since:${repository}`;
  const stored = checkpoint[key];
  let since = typeof stored === 'string' ? stored : undefined;
  let saved = 0;
  for (;;) {
    const req: HttpRequest = {
      path: repoPath(repository, '/issues'),
      query: { state: 'all', per_page: PER_PAGE, sort: 'updated', direction: 'asc', since },
      headers: GITHUB_HEADERS,
    };
    const from = since;
    let restart = false;
    for await (const page of ctx.http.paginate<GhIssue>(req, { type: 'link' })) {
      ctx.signal.throwIfAborted();
      // The issues endpoint also returns pull requests; they belong to the pull-requests sync.
      const issues = page.filter((i) => i.pull_request === undefined).map((i) => toIssue(i, repository));
      if (issues.length > 0) await ctx.batchSave('GithubIssue', issues);
      saved += issues.length;
      let newest = since;
      for (const i of page) newest = maxIso(newest, i.updated_at);
      if (newest !== undefined && newest !== since) {
        since = newest;
        checkpoint[key] = newest;
        await ctx.saveCheckpoint({ ...checkpoint });
      }
      ctx.log.info('github issues page', { repository, items: page.length, issues: issues.length, since: since ?? null });
      if (page.length >= PER_PAGE && since !== from) {
        restart = true;
        break;
      }
    }
    if (!restart) break;
  }
  ctx.log.info('github issues synced', { repository, issues: saved });
}

const issuesSync = defineSync({
  name: 'issues',
  description:
    'Issues (not pull requests) of the repositories listed in the connection metadata `repositories` ("owner/name"), or of every repository the connection can see. Incremental by updated_at, one checkpoint per repository.',
  models: { GithubIssue },
  frequency: '15m',
  syncType: 'incremental',
  autoStart: true,
  scopes: ['repo'],
  async exec(ctx) {
    const checkpoint: Checkpoint = { ...((await ctx.getCheckpoint()) ?? {}) };
    for (const repository of await listRepositories(ctx)) {
      ctx.signal.throwIfAborted();
      try {
        await syncRepositoryIssues(ctx, repository, checkpoint);
      } catch (err) {
        if (!isGoneRepository(err)) throw err;
        ctx.log.warn('github repository skipped', { repository, status: err.status });
      }
    }
  },
});

const pullRequestsSync = defineSync({
  name: 'pull-requests',
  description:
    'Pull requests (open and closed) of the repositories listed in the connection metadata `repositories`, or of every repository the connection can see. Full sync.',
  models: { GithubPullRequest },
  frequency: '1h',
  syncType: 'full',
  autoStart: false,
  scopes: ['repo'],
  async exec(ctx) {
    for (const repository of await listRepositories(ctx)) {
      ctx.signal.throwIfAborted();
      // Oldest first: a pull request opened mid-run lands on the last page instead of shifting every page by one.
      const req: HttpRequest = {
        path: repoPath(repository, '/pulls'),
        query: { state: 'all', per_page: PER_PAGE, sort: 'created', direction: 'asc' },
        headers: GITHUB_HEADERS,
      };
      let count = 0;
      try {
        for await (const page of ctx.http.paginate<GhPull>(req, { type: 'link' })) {
          ctx.signal.throwIfAborted();
          if (page.length > 0)
            await ctx.batchSave(
              'GithubPullRequest',
              page.map((p) => toPullRequest(p, repository)),
            );
          count += page.length;
          ctx.log.info('github pull requests page', { repository, items: page.length });
        }
      } catch (err) {
        if (!isGoneRepository(err)) throw err;
        ctx.log.warn('github repository skipped', { repository, status: err.status });
      }
      ctx.log.info('github pull requests synced', { repository, pullRequests: count });
    }
  },
});

const createIssue = defineAction({
  name: 'create-issue',
  description: 'Open an issue in a repository. Labels that do not exist are created; assignees without push access are dropped by GitHub.',
  input: z.object({
    owner: ownerSchema,
    repo: repoSchema,
    title: z.string().min(1).max(256),
    body: z.string().max(65536).optional(),
    labels: z.array(z.string().min(1).max(50)).max(100).optional(),
    assignees: z.array(ownerSchema).max(10).optional(),
  }),
  output: z.object({
    id: z.string().max(20),
    number: z.number().int().positive(),
    html_url: z.url(),
    title: z.string(),
    state: z.enum(['open', 'closed']),
  }),
  scopes: ['repo'],
  async exec(ctx, input) {
    const { owner, repo, ...fields } = input;
    const res = await ctx.http.request<GhIssue>({
      method: 'POST',
      path: repoPath(`${owner}/${repo}`, '/issues'),
      headers: GITHUB_HEADERS,
      body: fields,
    });
    const issue = res.data;
    ctx.log.info('github issue created', { repository: `${owner}/${repo}`, number: issue.number });
    return { id: String(issue.id), number: issue.number, html_url: issue.html_url, title: issue.title, state: issue.state };
  },
});

export const githubFunctions: FunctionDefinition[] = [issuesSync, pullRequestsSync, createIssue];
