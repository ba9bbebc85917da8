import {
  abortReason,
  EgressDeniedError,
  EgressError,
  EgressHostNotFoundError,
  EgressNetworkError,
  EgressResponseTooLargeError,
  INVALID_HEADER_CODES,
  neverSent,
} from './errors.js';

// ---------------------------------------------------------------------------------------------
// Retries

export interface RetryOptions {
  /** extra attempts after the first */
  retries: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** default: 429, 502, 503, 504 */
  retryOn?: (res: Response) => boolean;
  /** default true; never for EgressDeniedError, an unknown host, a request that cannot be built or sent (TypeError, invalid header), an oversized response or an abort */
  retryNetworkErrors?: boolean;
  /**
   * Default true. A request that is not idempotent (POST, PATCH without an idempotency key) may
   * have been carried out even when it failed, so it is sent again only when it provably never
   * reached the server: no connection was made (see `neverSent`), or the answer is one that
   * `refusedUnprocessed` recognizes.
   */
  idempotent?: boolean;
  /** Answers that mean "refused before processing" (default: 429); only consulted when `idempotent` is false. */
  refusedUnprocessed?: (res: Response) => boolean;
  /** Told about every retry before its wait. */
  onRetry?: (info: RetryInfo) => void;
  signal?: AbortSignal;
  sleep?: (ms: number) => Promise<void>;
}

export interface RetryInfo {
  /** The attempt that failed (1 for the first), out of `retries + 1`. */
  attempt: number;
  maxAttempts: number;
  /** The status of the answer that is retried, or the error code of the failure. */
  status?: number;
  error?: string;
  delayMs: number;
}

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);
const IDEMPOTENT_METHODS = new Set(['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS']);
/** A resolver that does not answer (EAI_AGAIN) is retried this many times at most: a long DNS outage is an outage. */
const DNS_TEMPORARY_RETRIES = 2;

/** RFC 9110 §9.2.2: sending these twice has the effect of sending them once. */
export function isIdempotentMethod(method: string): boolean {
  return IDEMPOTENT_METHODS.has(method.toUpperCase());
}

/** A short code for a failure: the egress error code, the system error code, or the error's name. */
function errorCode(err: unknown): string {
  if (err instanceof EgressNetworkError && err.errno) return err.errno;
  if (err instanceof EgressError) return err.code;
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ?? err.name;
  return 'error';
}

function sleepWithSignal(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortReason(signal));
    const onAbort = (): void => {
      clearTimeout(timer);
      reject(abortReason(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Milliseconds the server asked us to wait, from Retry-After or (when rate limited) a reset header. */
export function serverRequestedDelay(res: Response, now = Date.now()): number | undefined {
  const retryAfter = res.headers.get('retry-after')?.trim();
  if (retryAfter) {
    if (/^\d+(\.\d+)?$/.test(retryAfter)) return Number(retryAfter) * 1000;
    const date = Date.parse(retryAfter);
    if (!Number.isNaN(date)) return Math.max(0, date - now);
  }
  // Providers send reset headers on every response; they only mean "wait" once the quota is gone.
  const remaining = res.headers.get('x-ratelimit-remaining') ?? res.headers.get('ratelimit-remaining');
  if (res.status !== 429 && remaining?.trim() !== '0') return undefined;
  for (const name of ['ratelimit-reset', 'x-ratelimit-reset']) {
    const raw = res.headers.get(name)?.trim();
    if (!raw || !/^\d+(\.\d+)?$/.test(raw)) continue;
    const value = Number(raw);
    // Seconds until reset (IETF draft), or an epoch timestamp in seconds (GitHub) or milliseconds.
    if (value > 1e12) return Math.max(0, value - now);
    if (value > 1e9) return Math.max(0, value * 1000 - now);
    return value * 1000;
  }
  return undefined;
}

function isRetryableError(err: unknown, signal?: AbortSignal): boolean {
  if (signal?.aborted) return false;
  if (err instanceof EgressDeniedError || err instanceof EgressHostNotFoundError || err instanceof EgressResponseTooLargeError)
    return false;
  // A request that cannot be built (the egress client's TypeErrors: a bad URL, method or header
  // value) or a header that cannot be sent will not become sendable by waiting.
  if (err instanceof TypeError) return false;
  if (err instanceof EgressNetworkError && err.errno && INVALID_HEADER_CODES.has(err.errno)) return false;
  return !(err instanceof Error && err.name === 'AbortError');
}

/**
 * Calls `attempt` until it returns a non-retryable response or retries run out; honours
 * Retry-After and (X-)RateLimit-Reset capped by maxDelayMs, else exponential backoff with full
 * jitter. Returns the last response, or throws the last network error. Requests that are not
 * idempotent are retried only when they provably never reached the server (see `idempotent`).
 */
export async function withRetries(attempt: () => Promise<Response>, opts: RetryOptions): Promise<Response> {
  const baseDelayMs = opts.baseDelayMs ?? 200;
  const maxDelayMs = opts.maxDelayMs ?? 10_000;
  const retryOn = opts.retryOn ?? ((res: Response) => RETRYABLE_STATUS.has(res.status));
  const retryNetworkErrors = opts.retryNetworkErrors ?? true;
  const { signal } = opts;
  const idempotent = opts.idempotent ?? true;
  const refusedUnprocessed = opts.refusedUnprocessed ?? ((res: Response) => res.status === 429);
  const sleep = opts.sleep ?? ((ms: number) => sleepWithSignal(ms, signal));
  const backoff = (n: number): number => Math.floor(Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** n));
  const maxAttempts = opts.retries + 1;

  for (let n = 0; ; n++) {
    if (signal?.aborted) throw abortReason(signal);
    let res: Response;
    try {
      res = await attempt();
    } catch (err) {
      if (n >= opts.retries || !retryNetworkErrors || !isRetryableError(err, signal)) throw err;
      if (!idempotent && !neverSent(err)) throw err;
      if (err instanceof EgressNetworkError && err.errno === 'EAI_AGAIN' && n >= DNS_TEMPORARY_RETRIES) throw err;
      const delayMs = backoff(n);
      opts.onRetry?.({ attempt: n + 1, maxAttempts, error: errorCode(err), delayMs });
      await sleep(delayMs);
      continue;
    }
    if (n >= opts.retries || !retryOn(res)) return res;
    if (!idempotent && !refusedUnprocessed(res)) return res;
    const requested = serverRequestedDelay(res);
    await res.body?.cancel().catch(() => undefined);
    const delayMs = requested === undefined ? backoff(n) : Math.min(Math.max(0, requested), maxDelayMs);
    opts.onRetry?.({ attempt: n + 1, maxAttempts, status: res.status, delayMs });
    await sleep(delayMs);
  }
}
