import { z } from 'zod';
import { defineAction, defineSync, type FunctionContextBase, type FunctionDefinition, type HttpRequest, ProviderError } from '../define.js';

/** Built-in Slack functions, written against the Slack Web API (base URL `https://slack.com/api`). */

// users.list recommends 200 per page; conversations.list accepts up to 1000 but Slack filters after paging, so a
// large limit buys little and makes each call slower.
const PAGE_SIZE = 200;

const slackId = z.string().min(1).max(32);

export const SlackUser = z.object({
  id: slackId,
  name: z.string().max(255),
  real_name: z.string().max(255).nullable(),
  display_name: z.string().max(255).nullable(),
  email: z.string().max(320).nullable(),
  is_bot: z.boolean(),
  is_admin: z.boolean(),
  deleted: z.boolean(),
  tz: z.string().max(64).nullable(),
  /** Unix seconds of the last profile change. */
  updated: z.number().int().nonnegative(),
});

export const SlackChannel = z.object({
  id: slackId,
  name: z.string().max(255),
  is_private: z.boolean(),
  is_archived: z.boolean(),
  topic: z.string(),
  purpose: z.string(),
  num_members: z.number().int().nonnegative().nullable(),
  /** Unix seconds. */
  created: z.number().int().nonnegative(),
});

export const SlackSendMessageInput = z.object({
  /** A channel id (`C…`, `G…`, `D…`), or a channel name (`#general`). */
  channel: z.string().min(1).max(100).regex(/^\S+$/, 'must be a channel id or name'),
  text: z.string().min(1).max(40_000),
  thread_ts: z
    .string()
    .max(32)
    .regex(/^\d+\.\d+$/, 'must be a Slack message ts')
    .optional(),
});

export const SlackSendMessageOutput = z.object({
  ok: z.boolean(),
  channel: slackId,
  ts: z.string().max(32),
  text: z.string(),
});

// The subset of Slack's JSON this module reads.
interface SlackEnvelope {
  ok: boolean;
  error?: string;
  /** with `missing_scope`: the scope the token lacks */
  needed?: string;
  warning?: string;
  response_metadata?: { next_cursor?: string; warnings?: string[] };
}
interface SlackMember {
  id: string;
  name: string;
  deleted?: boolean;
  real_name?: string;
  tz?: string | null;
  is_admin?: boolean;
  is_bot?: boolean;
  updated?: number;
  profile?: { real_name?: string; display_name?: string; email?: string };
}
interface SlackConversation {
  id: string;
  name: string;
  is_private?: boolean;
  is_archived?: boolean;
  created: number;
  topic?: { value?: string };
  purpose?: { value?: string };
  num_members?: number;
}
interface UsersListPage extends SlackEnvelope {
  members?: SlackMember[];
}
interface ConversationsListPage extends SlackEnvelope {
  channels?: SlackConversation[];
}
interface PostMessageAnswer extends SlackEnvelope {
  channel: string;
  ts: string;
  message?: { text?: string; ts?: string };
}

/** Slack refused a Web API call (`ok: false` in a 200 answer); `code` is Slack's error string. */
export class SlackApiError extends ProviderError {
  constructor(
    readonly method: string,
    readonly code: string,
    readonly needed?: string,
    body = '',
  ) {
    super(`Slack ${method} failed: ${code}${needed ? ` (needed scope: ${needed})` : ''}`, 200, body);
    this.name = 'SlackApiError';
  }
}

/**
 * One Web API call. Slack answers most errors with HTTP 200 and `{ ok: false, error }`, which the http client cannot
 * tell from a success, so every call goes through here.
 */
async function slackCall<T extends SlackEnvelope>(ctx: FunctionContextBase, method: string, req: Omit<HttpRequest, 'path'>): Promise<T> {
  const { data } = await ctx.http.request<T>({ ...req, path: `/${method}` });
  if (typeof data !== 'object' || data === null || data.ok !== true) {
    const body = (typeof data === 'object' && data !== null ? data : {}) as Partial<SlackEnvelope>;
    throw new SlackApiError(method, body.error ?? 'unexpected_response', body.needed, JSON.stringify(data ?? null));
  }
  const warnings = data.response_metadata?.warnings ?? (data.warning ? [data.warning] : []);
  if (warnings.length > 0) ctx.log.warn(`Slack ${method} warned`, { warnings });
  return data;
}

/** Follows `response_metadata.next_cursor` (an empty string on the last page) and yields each page's body. */
async function* slackPages<T extends SlackEnvelope>(
  ctx: FunctionContextBase,
  method: string,
  query: HttpRequest['query'],
): AsyncGenerator<T> {
  let cursor = '';
  const seen = new Set<string>();
  do {
    ctx.signal.throwIfAborted();
    const page = await slackCall<T>(ctx, method, { method: 'GET', query: { ...query, cursor: cursor || undefined } });
    yield page;
    cursor = page.response_metadata?.next_cursor ?? '';
    if (seen.has(cursor)) throw new Error(`Slack ${method} returned a cursor it had already returned`);
    seen.add(cursor);
  } while (cursor !== '');
}

// Slack sends "" for unset profile fields; the models say null.
const orNull = (value: string | null | undefined): string | null => (value ? value : null);

function toSlackUser(m: SlackMember): z.input<typeof SlackUser> {
  return {
    id: m.id,
    name: m.name,
    // Deleted users lose their top-level real_name/tz/is_admin but keep their profile.
    real_name: orNull(m.real_name) ?? orNull(m.profile?.real_name),
    display_name: orNull(m.profile?.display_name),
    // Only present when the token has `users:read.email`.
    email: orNull(m.profile?.email),
    is_bot: m.is_bot ?? false,
    is_admin: m.is_admin ?? false,
    deleted: m.deleted ?? false,
    tz: orNull(m.tz),
    updated: m.updated ?? 0,
  };
}

function toSlackChannel(c: SlackConversation): z.input<typeof SlackChannel> {
  return {
    id: c.id,
    name: c.name,
    is_private: c.is_private ?? false,
    is_archived: c.is_archived ?? false,
    topic: c.topic?.value ?? '',
    purpose: c.purpose?.value ?? '',
    num_members: c.num_members ?? null,
    created: c.created,
  };
}

const users = defineSync({
  name: 'users',
  description: 'Every member of the workspace, bots and deactivated users included (`deleted: true`).',
  models: { SlackUser },
  frequency: '1h',
  syncType: 'full',
  autoStart: true,
  scopes: ['users:read', 'users:read.email'],
  async exec(ctx) {
    let total = 0;
    for await (const page of slackPages<UsersListPage>(ctx, 'users.list', { limit: PAGE_SIZE })) {
      // Deactivated users stay in users.list with `deleted: true`: they are records, not deletions.
      const records = (page.members ?? []).map(toSlackUser);
      if (records.length > 0) await ctx.batchSave('SlackUser', records);
      total += records.length;
      ctx.log.info('users.list page saved', { count: records.length, total });
    }
  },
});

const channels = defineSync({
  name: 'channels',
  description: 'Public channels, and the private channels the token is a member of, archived ones included.',
  models: { SlackChannel },
  frequency: '1h',
  syncType: 'full',
  autoStart: false,
  scopes: ['channels:read', 'groups:read'],
  async exec(ctx) {
    let total = 0;
    const query = { types: 'public_channel,private_channel', exclude_archived: false, limit: PAGE_SIZE };
    // Slack filters after paging, so a page can be short, even empty, while next_cursor is set: follow the cursor.
    for await (const page of slackPages<ConversationsListPage>(ctx, 'conversations.list', query)) {
      const records = (page.channels ?? []).map(toSlackChannel);
      if (records.length > 0) await ctx.batchSave('SlackChannel', records);
      total += records.length;
      ctx.log.info('conversations.list page saved', { count: records.length, total });
    }
  },
});

const sendMessage = defineAction({
  name: 'send-message',
  description: 'Post a message to a channel (or a thread, with thread_ts) as the connected app.',
  input: SlackSendMessageInput,
  output: SlackSendMessageOutput,
  scopes: ['chat:write'],
  async exec(ctx, input) {
    const answer = await slackCall<PostMessageAnswer>(ctx, 'chat.postMessage', {
      method: 'POST',
      // Without the charset Slack accepts the JSON body but adds a `missing_charset` warning.
      headers: { 'Content-Type': 'application/json; charset=utf-8' },
      body: { channel: input.channel, text: input.text, thread_ts: input.thread_ts },
    });
    ctx.log.info('chat.postMessage sent', { channel: answer.channel, ts: answer.ts });
    return { ok: true, channel: answer.channel, ts: answer.ts, text: answer.message?.text ?? input.text };
  },
});

export const slackFunctions: FunctionDefinition[] = [users, channels, sendMessage];
