import { isIdempotentMethod, type RetryInfo, withRetries } from '../lib/egress.js';
import type { HttpRequest, HttpResponse, Paginator, ProviderHttp, RunLogger } from './define.js';
import { ProviderHttpError } from './define.js';

export interface Credentials {
  headers: Record<string, string>;
  query: Record<string, string>;
}

export interface ProviderHttpOptions {
  fetch: typeof fetch;
  baseUrl: string;
  /** The connection's credentials as headers / query parameters; `force` after a 401 (OAuth refresh). */
  credentials(force: boolean): Promise<Credentials & { refreshable: boolean }>;
  signal: AbortSignal;
  log: RunLogger;
  retries?: number;
  maxDelayMs?: number;
}

const MAX_ERROR_BODY = 4000;

/** Dot path into a JSON value: `response_metadata.next_cursor`. */
export function pick(value: unknown, path: string | undefined): unknown {
  if (!path) return value;
  let cur = value;
  for (const key of path.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = (cur as Record<string, unknown>)[key];
  }
  return cur;
}

/** The `rel="next"` target of an RFC 8288 Link header. */
export function nextLink(header: string | null): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(',')) {
    const m = /<([^>]+)>\s*;(.*)/.exec(part.trim());
    if (m && /\brel="?([^";]*\s)?next(\s[^";]*)?"?/.test(m[2]!)) return m[1];
  }
  return undefined;
}

/**
 * A rate-limit refusal: 429, or a GitHub-style 403 saying the quota is gone
 * (`x-ratelimit-remaining: 0`). The provider refused before doing anything, so even a write may
 * be sent again.
 */
function rateLimited(res: Response): boolean {
  return res.status === 429 || (res.status === 403 && res.headers.get('x-ratelimit-remaining')?.trim() === '0');
}

/**
 * A provider's answer is retried on rate limits and 5xx (writes only on rate limits, see
 * `HttpRequest.idempotent`); waits honour Retry-After and reset headers. A 503, even with
 * Retry-After, does not prove the request was not processed (a gateway may answer it while the
 * backend carries on), so it is not enough to send a write again.
 */
function retryable(res: Response): boolean {
  return rateLimited(res) || res.status === 500 || res.status === 502 || res.status === 503 || res.status === 504;
}

function describeRetry(method: string, url: URL, r: RetryInfo): string {
  const what = r.status === undefined ? `failed (${r.error})` : `answered ${r.status}`;
  return `${method} ${url.origin}${url.pathname} ${what}: retrying in ${(r.delayMs / 1000).toFixed(1)} s (attempt ${r.attempt + 1} of ${r.maxAttempts})`;
}

export function createProviderHttp(opts: ProviderHttpOptions): ProviderHttp {
  const base = new URL(opts.baseUrl.endsWith('/') ? opts.baseUrl : `${opts.baseUrl}/`);

  function resolve(path: string): URL {
    if (/^https?:\/\//i.test(path)) {
      const url = new URL(path);
      // Pagination links are followed only on the provider's own host: credentials never leave it.
      if (url.host !== base.host) throw new Error(`refusing to send credentials to ${url.host} (the API is on ${base.host})`);
      return url;
    }
    return new URL(path.replace(/^\/+/, ''), base);
  }

  async function send(req: HttpRequest, force: boolean): Promise<{ res: Response; url: URL; refreshable: boolean }> {
    const creds = await opts.credentials(force);
    const url = resolve(req.path);
    for (const [k, v] of Object.entries(req.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    for (const [k, v] of Object.entries(creds.query)) url.searchParams.set(k, v);
    const headers: Record<string, string> = { accept: 'application/json', ...lower(req.headers), ...creds.headers };
    if (req.idempotencyKey !== undefined) headers[(req.idempotencyHeader ?? 'Idempotency-Key').toLowerCase()] = req.idempotencyKey;
    const method = req.method ?? 'GET';
    let body: string | undefined;
    if (req.body !== undefined) {
      if (req.form) {
        body = new URLSearchParams(req.body as Record<string, string>).toString();
        headers['content-type'] ??= 'application/x-www-form-urlencoded';
      } else {
        body = JSON.stringify(req.body);
        headers['content-type'] ??= 'application/json';
      }
    }
    const res = await withRetries(() => opts.fetch(url, { method, headers, body, signal: opts.signal }), {
      retries: opts.retries ?? 8,
      baseDelayMs: 500,
      maxDelayMs: opts.maxDelayMs ?? 120_000,
      retryOn: retryable,
      idempotent: req.idempotencyKey !== undefined || (req.idempotent ?? isIdempotentMethod(method)),
      refusedUnprocessed: rateLimited,
      onRetry: (r) =>
        opts.log.warn(describeRetry(method, url, r), {
          attempt: r.attempt,
          ...(r.status === undefined ? { error: r.error } : { status: r.status }),
          delay_ms: r.delayMs,
        }),
      signal: opts.signal,
    });
    return { res, url, refreshable: creds.refreshable };
  }

  async function request<T>(req: HttpRequest): Promise<HttpResponse<T>> {
    const first = await send(req, false);
    let { res, url } = first;
    const { refreshable } = first;
    if (res.status === 401 && refreshable) {
      // The token may have been revoked early or rotated elsewhere: refresh once and try again.
      await res.body?.cancel().catch(() => undefined);
      ({ res, url } = await send(req, true));
    }
    const text = await res.text();
    const method = req.method ?? 'GET';
    if (res.status < 200 || res.status >= 300) {
      throw new ProviderHttpError(res.status, text.slice(0, MAX_ERROR_BODY), method, `${url.origin}${url.pathname}`);
    }
    let data: unknown = text;
    const type = res.headers.get('content-type') ?? '';
    if (text && (type.includes('json') || /^\s*[[{]/.test(text))) {
      try {
        data = JSON.parse(text);
      } catch {
        throw new ProviderHttpError(res.status, `invalid JSON: ${text.slice(0, 200)}`, method, `${url.origin}${url.pathname}`);
      }
    } else if (type.includes('text/html')) {
      throw new ProviderHttpError(res.status, `expected JSON, got HTML: ${text.slice(0, 200)}`, method, `${url.origin}${url.pathname}`);
    }
    return { status: res.status, headers: res.headers, data: data as T };
  }

  async function* paginate<T>(req: HttpRequest, p: Paginator): AsyncGenerator<T[]> {
    let current: HttpRequest = { ...req, query: { ...req.query, ...(p.limitParam && p.limit ? { [p.limitParam]: p.limit } : {}) } };
    let offset = p.type === 'offset' ? Number(req.query?.[p.offsetParam] ?? 0) : 0;
    if (p.type === 'offset') current.query = { ...current.query, [p.offsetParam]: offset };
    for (;;) {
      opts.signal.throwIfAborted();
      const { data, headers } = await request<unknown>(current);
      const items = pick(data, p.itemsPath);
      if (!Array.isArray(items)) throw new Error(`expected a list at "${p.itemsPath ?? '(body)'}" of ${current.path}`);
      if (items.length) yield items as T[];
      if (p.type === 'link') {
        const next = nextLink(headers.get('link'));
        if (!next) return;
        current = { ...req, path: next, query: undefined };
      } else if (p.type === 'cursor') {
        const cursor = pick(data, p.cursorPath);
        if (cursor === undefined || cursor === null || cursor === '' || !items.length) return;
        if (typeof cursor !== 'string' && typeof cursor !== 'number')
          throw new Error(`expected a cursor (string or number) at "${p.cursorPath}" of ${current.path}`);
        current = { ...current, query: { ...current.query, [p.cursorParam]: String(cursor) } };
      } else {
        offset += items.length;
        const total = p.totalPath ? Number(pick(data, p.totalPath)) : undefined;
        if (items.length < p.limit || (total !== undefined && offset >= total)) return;
        current = { ...current, query: { ...current.query, [p.offsetParam]: offset } };
      }
    }
  }

  return {
    request,
    async get<T>(path: string, query?: HttpRequest['query']) {
      return (await request<T>({ method: 'GET', path, query })).data;
    },
    async post<T>(path: string, body?: unknown, query?: HttpRequest['query']) {
      return (await request<T>({ method: 'POST', path, body, query })).data;
    },
    paginate,
  };
}

function lower(headers: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(headers ?? {})) out[k.toLowerCase()] = v;
  return out;
}
