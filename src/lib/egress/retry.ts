import { abortReason, EgressDeniedError, EgressResponseTooLargeError } from './errors.js';

// ---------------------------------------------------------------------------------------------
// Retries

export interface RetryOptions {
  /** extra attempts after the first */
  retries: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** default: 429, 502, 503, 504 */
  retryOn?: (res: Response) => boolean;
  /** default true; never for EgressDeniedError, an oversized response or an abort */
  retryNetworkErrors?: boolean;
  signal?: AbortSignal;
  sleep?: (ms: number) => Promise<void>;
}

const RETRYABLE_STATUS = new Set([429, 502, 503, 504]);

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
  if (err instanceof EgressDeniedError || err instanceof EgressResponseTooLargeError) return false;
  return !(err instanceof Error && err.name === 'AbortError');
}

/**
 * Calls `attempt` until it returns a non-retryable response or retries run out; honours
 * Retry-After and (X-)RateLimit-Reset capped by maxDelayMs, else exponential backoff with full
 * jitter. Returns the last response, or throws the last network error.
 */
export async function withRetries(attempt: () => Promise<Response>, opts: RetryOptions): Promise<Response> {
  const baseDelayMs = opts.baseDelayMs ?? 200;
  const maxDelayMs = opts.maxDelayMs ?? 10_000;
  const retryOn = opts.retryOn ?? ((res: Response) => RETRYABLE_STATUS.has(res.status));
  const retryNetworkErrors = opts.retryNetworkErrors ?? true;
  const { signal } = opts;
  const sleep = opts.sleep ?? ((ms: number) => sleepWithSignal(ms, signal));
  const backoff = (n: number): number => Math.floor(Math.random() * Math.min(maxDelayMs, baseDelayMs * 2 ** n));

  for (let n = 0; ; n++) {
    if (signal?.aborted) throw abortReason(signal);
    let res: Response;
    try {
      res = await attempt();
    } catch (err) {
      if (n >= opts.retries || !retryNetworkErrors || !isRetryableError(err, signal)) throw err;
      await sleep(backoff(n));
      continue;
    }
    if (n >= opts.retries || !retryOn(res)) return res;
    const requested = serverRequestedDelay(res);
    await res.body?.cancel().catch(() => undefined);
    await sleep(requested === undefined ? backoff(n) : Math.min(Math.max(0, requested), maxDelayMs));
  }
}
