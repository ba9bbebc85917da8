import type { z } from 'zod';

/**
 * The contract between Terapi's function runtime and the functions it runs. Built-in functions
 * (`library/`) are written against these types only: the runtime builds the context for each run.
 */

/** A record a sync saves: any object with a string (or numeric) `id` unique within its model. */
export type SyncRecord = { id: string | number } & Record<string, unknown>;

export interface HttpRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE';
  /** Path under the provider's API base URL (`/repos/a/b/issues`), or an absolute URL on the same host (pagination links). */
  path: string;
  query?: Record<string, string | number | boolean | undefined>;
  headers?: Record<string, string>;
  /** Sent as JSON (or as a form when `form` is true). */
  body?: unknown;
  form?: boolean;
  /**
   * Whether sending the request twice has the effect of sending it once. Default: true for GET,
   * PUT and DELETE, false for POST and PATCH. A request that is not idempotent is retried only when
   * it provably never reached the provider (no connection could be made, or a 429 / rate-limit
   * refusal); after a 5xx or a timeout it fails at once, so a write is never done twice. Set it to
   * true for reads sent as POST (GraphQL queries, search endpoints).
   */
  idempotent?: boolean;
  /**
   * A key the provider uses to recognize a repeated request (Stripe-style `Idempotency-Key`): sent
   * in `idempotencyHeader`, and makes the request safe to retry after a 5xx or a timeout. Use a
   * value that is the same for every attempt of one logical write (e.g. derived from the run id).
   */
  idempotencyKey?: string;
  /** Header carrying `idempotencyKey`; default `Idempotency-Key`. */
  idempotencyHeader?: string;
}

export interface HttpResponse<T = unknown> {
  status: number;
  headers: Headers;
  data: T;
}

/** How a list endpoint pages. Paths are dot paths into the JSON body (`response_metadata.next_cursor`). */
export type Paginator =
  /** RFC 8288 `Link: <url>; rel="next"` (GitHub, many REST APIs). */
  | { type: 'link'; itemsPath?: string; limitParam?: string; limit?: number }
  /** The body names the next cursor, sent back as a query parameter (Slack, HubSpot, Stripe-like). */
  | { type: 'cursor'; itemsPath: string; cursorPath: string; cursorParam: string; limitParam?: string; limit?: number }
  /** Offset and limit query parameters until a short page (Jira `startAt`/`maxResults`). */
  | { type: 'offset'; itemsPath: string; offsetParam: string; limitParam: string; limit: number; totalPath?: string };

/**
 * HTTP client bound to one connection: base URL from the catalog or the integration's override,
 * the connection's credentials injected per the catalog (refreshed when they expire), retries on
 * 429 and 5xx honouring Retry-After and rate-limit headers (only when safe: see
 * `HttpRequest.idempotent`), each retry written to the run log, timeouts and the egress policy.
 * A non-2xx answer (after retries) throws `ProviderHttpError`.
 */
export interface ProviderHttp {
  request<T = unknown>(req: HttpRequest): Promise<HttpResponse<T>>;
  get<T = unknown>(path: string, query?: HttpRequest['query']): Promise<T>;
  post<T = unknown>(path: string, body?: unknown, query?: HttpRequest['query']): Promise<T>;
  /** Yields one page of items at a time. */
  paginate<T = unknown>(req: HttpRequest, paginator: Paginator): AsyncGenerator<T[]>;
}

export interface RunLogger {
  info(message: string, data?: Record<string, unknown>): void;
  warn(message: string, data?: Record<string, unknown>): void;
  error(message: string, data?: Record<string, unknown>): void;
}

export interface FunctionContextBase {
  connection: {
    connectionId: string;
    providerConfigKey: string;
    provider: string;
    connectionConfig: Record<string, unknown>;
  };
  http: ProviderHttp;
  /** The connection's metadata (set by the SaaS backend), e.g. which repositories to sync. */
  getMetadata<T extends Record<string, unknown> = Record<string, unknown>>(): Promise<T>;
  log: RunLogger;
  /** Aborted when the run times out or the worker shuts down; pass it on and stop early. */
  signal: AbortSignal;
}

export type Checkpoint = Record<string, string | number | boolean | null>;

export interface SyncContext<Models extends Record<string, z.ZodType> = Record<string, z.ZodType>> extends FunctionContextBase {
  /**
   * Insert or update records (idempotent: unchanged records are not rewritten). Each record is
   * validated with the model's schema before anything is queued (an invalid one fails the call);
   * the write itself happens behind the function: the call returns once the batch is queued, so the
   * next page can be fetched while it is written. `batchDelete`, `getCheckpoint`, `saveCheckpoint`
   * and the end of the run wait for the queued writes (a checkpoint is never saved ahead of its
   * records); a write the database refuses fails the next of these calls (or `batchSave`), and the run.
   */
  batchSave<M extends keyof Models & string>(model: M, records: z.input<Models[M]>[]): Promise<void>;
  /** Update records known to exist (same store semantics as batchSave). */
  batchUpdate<M extends keyof Models & string>(model: M, records: z.input<Models[M]>[]): Promise<void>;
  /** Mark records deleted (incremental syncs that learn about deletions). */
  batchDelete<M extends keyof Models & string>(model: M, records: { id: string | number }[]): Promise<void>;
  /** The checkpoint saved by the last successful page of an incremental sync, or null for a full resync. */
  getCheckpoint(): Promise<Checkpoint | null>;
  saveCheckpoint(checkpoint: Checkpoint): Promise<void>;
}

export type ActionContext = FunctionContextBase;

export interface SyncDefinition<Models extends Record<string, z.ZodType> = Record<string, z.ZodType>> {
  type: 'sync';
  name: string;
  description: string;
  /** Model name → schema of one record (must have an `id`). */
  models: Models;
  /** Default frequency, e.g. `15m`, `1h`, `1d` (1 minute to 31 days). */
  frequency: string;
  /** `full`: every run fetches everything and records not seen are deleted; `incremental`: from the checkpoint. */
  syncType: 'full' | 'incremental';
  /** Scheduled for every connection as soon as it is enabled (unless the enabling request says otherwise). */
  autoStart: boolean;
  /** Provider scopes the function needs (informational). */
  scopes?: string[];
  exec(ctx: SyncContext<Models>): Promise<void>;
}

export interface ActionDefinition<I extends z.ZodType = z.ZodType, O extends z.ZodType = z.ZodType> {
  type: 'action';
  name: string;
  description: string;
  input: I;
  output: O;
  scopes?: string[];
  exec(ctx: ActionContext, input: z.output<I>): Promise<z.input<O>>;
}

// Any definition, whatever its models and schemas: `unknown` would not accept a concrete one
// (its exec and schemas are contravariant in them).
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- see above
export type FunctionDefinition = SyncDefinition<any> | ActionDefinition<any, any>;

export function defineSync<Models extends Record<string, z.ZodType>>(def: Omit<SyncDefinition<Models>, 'type'>): SyncDefinition<Models> {
  return { type: 'sync', ...def };
}

export function defineAction<I extends z.ZodType, O extends z.ZodType>(def: Omit<ActionDefinition<I, O>, 'type'>): ActionDefinition<I, O> {
  return { type: 'action', ...def };
}

/**
 * The provider refused: actions surface it as 424 with the provider's status and body. Throw it
 * (or a subclass) for errors a provider reports inside a 2xx answer (Slack's `ok: false`, GraphQL
 * `errors`), so the SaaS backend sees what the provider said.
 */
export class ProviderError extends Error {
  constructor(
    message: string,
    readonly status: number,
    readonly body: string,
  ) {
    super(message);
    this.name = 'ProviderError';
  }
}

/** A provider's answer that is not 2xx (after retries). */
export class ProviderHttpError extends ProviderError {
  constructor(
    status: number,
    body: string,
    readonly method: string,
    readonly url: string,
  ) {
    super(`${method} ${url} answered ${status}${body ? `: ${body.slice(0, 300)}` : ''}`, status, body);
    this.name = 'ProviderHttpError';
  }
}
