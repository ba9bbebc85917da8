import { lookup as dnsLookup, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP, isIPv4, isIPv6, type LookupFunction } from 'node:net';
import { pipeline, type Readable } from 'node:stream';
import zlib from 'node:zlib';

/**
 * The one outbound HTTP client. Every request to a provider, token endpoint or webhook target goes
 * through `createEgressFetch`, which refuses private targets, pins the connection to the address it
 * checked (so a second DNS answer cannot rebind it), bounds time and response size, and never puts
 * request headers or bodies (which carry tokens) into an error message.
 */

export interface EgressPolicy {
  /** allow loopback/private/link-local/unique-local/CGNAT/metadata targets (tests, on-prem); default false */
  allowPrivateNetworks: boolean;
  /** hostnames always allowed even when they resolve privately (operator allow-list), exact match, lower-case */
  allowedHosts?: readonly string[];
}

export interface EgressOptions {
  policy: EgressPolicy;
  /** whole-call budget: connect, headers and body of every hop; default 30 s */
  timeoutMs?: number;
  userAgent?: string;
  /** default 0: a 3xx is returned as is; once the budget is spent the last 3xx is returned */
  maxRedirects?: number;
  /** cap on the (decoded) body; default 10 MiB */
  maxResponseBytes?: number;
}

export abstract class EgressError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class EgressDeniedError extends EgressError {
  readonly code = 'egress_denied';
  constructor(
    readonly host: string,
    readonly address: string,
    readonly reason: string,
  ) {
    super(`egress to ${host}${address && address !== host ? ` (${address})` : ''} denied: ${reason}`);
  }
}

export class EgressTimeoutError extends EgressError {
  readonly code = 'egress_timeout';
  constructor(origin: string, timeoutMs: number) {
    super(`request to ${origin} timed out after ${timeoutMs} ms`);
  }
}

export class EgressResponseTooLargeError extends EgressError {
  readonly code = 'egress_response_too_large';
  constructor(origin: string, maxBytes: number) {
    super(`response from ${origin} exceeds ${maxBytes} bytes`);
  }
}

export class EgressNetworkError extends EgressError {
  readonly code = 'egress_network_error';
}

// ---------------------------------------------------------------------------------------------
// Address classification

type V4Range = readonly [base: string, prefix: number, reason: string];
const V4_RANGES: readonly V4Range[] = [
  ['0.0.0.0', 8, 'unspecified address'],
  ['10.0.0.0', 8, 'private address'],
  ['100.64.0.0', 10, 'carrier-grade NAT address'],
  ['127.0.0.0', 8, 'loopback address'],
  ['169.254.0.0', 16, 'link-local (cloud metadata) address'],
  ['172.16.0.0', 12, 'private address'],
  ['192.0.0.0', 24, 'IETF protocol address'],
  ['192.0.2.0', 24, 'documentation address'],
  ['192.88.99.0', 24, '6to4 relay address'],
  ['192.168.0.0', 16, 'private address'],
  ['198.18.0.0', 15, 'benchmarking address'],
  ['198.51.100.0', 24, 'documentation address'],
  ['203.0.113.0', 24, 'documentation address'],
  ['224.0.0.0', 4, 'multicast address'],
  ['240.0.0.0', 4, 'reserved address'],
];

// `v4` marks prefixes whose low 32 bits (or bits 16..47 for 6to4) carry an IPv4 address that
// decides the verdict, so ::ffff:127.0.0.1 is as private as 127.0.0.1.
type V6Range = readonly [base: string, prefix: number, reason: string | { v4: 'low' | '6to4' }];
const V6_RANGES: readonly V6Range[] = [
  ['::', 128, 'unspecified address'],
  ['::1', 128, 'loopback address'],
  ['::ffff:0:0', 96, { v4: 'low' }],
  ['::ffff:0:0:0', 96, { v4: 'low' }],
  ['::', 96, 'IPv4-compatible address'],
  ['64:ff9b::', 96, { v4: 'low' }],
  ['64:ff9b:1::', 48, 'NAT64 local-use address'],
  ['100::', 64, 'discard-only address'],
  ['2001::', 32, 'Teredo address'],
  ['2001:2::', 48, 'benchmarking address'],
  ['2001:db8::', 32, 'documentation address'],
  ['2002::', 16, { v4: '6to4' }],
  ['3fff::', 20, 'documentation address'],
  ['fc00::', 7, 'unique-local address'],
  ['fe80::', 10, 'link-local address'],
  ['fec0::', 10, 'site-local address'],
  ['ff00::', 8, 'multicast address'],
];

function v4ToInt(address: string): number {
  return address.split('.').reduce((acc, octet) => acc * 256 + Number(octet), 0);
}

function v6ToBigInt(address: string): bigint {
  let text = address;
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1]) {
    const n = v4ToInt(dotted[1]);
    text = `${text.slice(0, -dotted[1].length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const zeros = tail === undefined ? [] : Array<string>(8 - headGroups.length - tailGroups.length).fill('0');
  return [...headGroups, ...zeros, ...tailGroups].reduce((acc, g) => (acc << 16n) | BigInt(`0x${g}`), 0n);
}

function classifyV4(address: string): string | null {
  const n = v4ToInt(address);
  for (const [base, prefix, reason] of V4_RANGES) {
    const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
    if (((n & mask) >>> 0) === v4ToInt(base)) return reason;
  }
  return null;
}

function intToV4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

function classifyV6(address: string): string | null {
  const n = v6ToBigInt(address);
  for (const [base, prefix, verdict] of V6_RANGES) {
    const shift = BigInt(128 - prefix);
    if (n >> shift !== v6ToBigInt(base) >> shift) continue;
    if (typeof verdict === 'string') return verdict;
    const embedded = Number(verdict.v4 === 'low' ? n & 0xffffffffn : (n >> 80n) & 0xffffffffn);
    const inner = classifyV4(intToV4(embedded));
    return inner === null ? null : `IPv4-embedded ${inner}`;
  }
  return null;
}

/** Why an address must not be reached by default, or null when it is a public unicast address. */
export function classifyAddress(address: string): string | null {
  const bare = address.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '');
  if (isIPv4(bare)) return classifyV4(bare);
  if (isIPv6(bare)) return classifyV6(bare.toLowerCase());
  // Fail closed: anything we cannot parse as an address is treated as unreachable.
  return 'not an IP address';
}

/** True unless `address` is a public unicast IPv4/IPv6 address (unparseable input counts as private). */
export function isPrivateAddress(address: string): boolean {
  return classifyAddress(address) !== null;
}

function denialReason(policy: EgressPolicy, host: string, address: string): string | null {
  if (policy.allowPrivateNetworks) return null;
  const bare = host.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  if (policy.allowedHosts?.some((h) => h === bare || h === `[${bare}]`)) return null;
  return classifyAddress(address);
}

/**
 * A `lookup` for node:http that checks every address DNS returns and hands back only checked ones,
 * so the socket connects to exactly what was checked. Any private answer denies the host: an
 * attacker controlling DNS could otherwise mix one public and one private record.
 */
function pinnedLookup(policy: EgressPolicy): LookupFunction {
  return (hostname, options, callback) => {
    dnsLookup(hostname, { all: true, family: options.family ?? 0, hints: options.hints ?? 0 }, (err, addresses: LookupAddress[]) => {
      if (err) return callback(err, '');
      for (const { address } of addresses) {
        const reason = denialReason(policy, hostname, address);
        if (reason) return callback(new EgressDeniedError(hostname, address, reason), '');
      }
      const first = addresses[0];
      if (!first) return callback(Object.assign(new Error(`no address for ${hostname}`), { code: 'ENOTFOUND' }), '');
      if (options.all) return callback(null, addresses);
      callback(null, first.address, first.family);
    });
  };
}

// ---------------------------------------------------------------------------------------------
// Fetch

interface Outgoing {
  url: URL;
  method: string;
  headers: Headers;
  body: Buffer | null;
}

interface Incoming {
  status: number;
  statusText: string;
  rawHeaders: string[];
  location: string | undefined;
  decoded: boolean;
  body: Buffer;
}

const NULL_BODY_STATUS = new Set([101, 103, 204, 205, 304]);
const REDIRECT_STATUS = new Set([301, 302, 303, 307, 308]);
const NORMALIZED_METHODS = new Set(['DELETE', 'GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH']);
// Node's messages for these quote the offending header value, which may be a token.
const HEADER_ERROR_CODES = new Set(['ERR_HTTP_INVALID_HEADER_VALUE', 'ERR_INVALID_CHAR', 'ERR_INVALID_HTTP_TOKEN']);

function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}

async function prepare(input: string | URL | Request, init: RequestInit | undefined, userAgent?: string): Promise<Outgoing> {
  const fromRequest = input instanceof Request ? input : undefined;
  const url = new URL(fromRequest ? fromRequest.url : input);
  if (url.username || url.password) throw new TypeError('URLs with embedded credentials are not allowed');
  const rawMethod = init?.method ?? fromRequest?.method ?? 'GET';
  const method = NORMALIZED_METHODS.has(rawMethod.toUpperCase()) ? rawMethod.toUpperCase() : rawMethod;
  if (['CONNECT', 'TRACE', 'TRACK'].includes(method.toUpperCase())) throw new TypeError(`method ${method} is forbidden`);
  const headers = new Headers(init?.headers ?? fromRequest?.headers);

  let body: Buffer | null = null;
  if (init?.body != null) {
    // Let the platform extract the body: it knows every BodyInit and the content-type each implies.
    const extracted = new Response(init.body);
    body = Buffer.from(await extracted.arrayBuffer());
    const type = extracted.headers.get('content-type');
    if (type && !headers.has('content-type')) headers.set('content-type', type);
  } else if (init?.body === undefined && fromRequest?.body) {
    body = Buffer.from(await fromRequest.arrayBuffer());
  }
  if (body && (method === 'GET' || method === 'HEAD')) throw new TypeError(`a ${method} request cannot have a body`);

  if (userAgent && !headers.has('user-agent')) headers.set('user-agent', userAgent);
  if (!headers.has('accept')) headers.set('accept', '*/*');
  // deflate is left out: servers disagree on whether it is zlib-wrapped.
  if (!headers.has('accept-encoding')) headers.set('accept-encoding', 'gzip, br');
  return { url, method, headers, body };
}

function nextHop(req: Outgoing, status: number, location: string): Outgoing {
  const url = new URL(location, req.url);
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new EgressDeniedError(url.hostname || url.protocol, '', `redirect to unsupported scheme ${url.protocol}`);
  }
  const headers = new Headers(req.headers);
  let { method, body } = req;
  if ((status === 303 && method !== 'GET' && method !== 'HEAD') || ((status === 301 || status === 302) && method === 'POST')) {
    method = 'GET';
    body = null;
    for (const h of ['content-type', 'content-length', 'content-encoding', 'content-language', 'content-location']) headers.delete(h);
  }
  // Credentials were meant for the first origin only.
  if (url.origin !== req.url.origin) for (const h of ['authorization', 'proxy-authorization', 'cookie', 'host']) headers.delete(h);
  return { url, method, headers, body };
}

function decoderFor(encoding: string | undefined): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | null {
  const flush = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
  switch (encoding?.trim().toLowerCase()) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip(flush);
    case 'deflate':
      return zlib.createInflate(flush);
    case 'br':
      return zlib.createBrotliDecompress({ finishFlush: zlib.constants.BROTLI_OPERATION_FLUSH });
    default:
      return null;
  }
}

function toResponse(incoming: Incoming, req: Outgoing, redirected: boolean): Response {
  const headers = new Headers();
  for (let i = 0; i + 1 < incoming.rawHeaders.length; i += 2) {
    try {
      headers.append(incoming.rawHeaders[i]!, incoming.rawHeaders[i + 1]!);
    } catch {
      // a header the Fetch spec cannot represent; Response would reject it, so drop it
    }
  }
  if (incoming.decoded) {
    // The body is already decoded; keeping these would make anyone forwarding it decode twice.
    headers.delete('content-encoding');
    headers.delete('content-length');
  }
  const body = NULL_BODY_STATUS.has(incoming.status) || req.method === 'HEAD' ? null : incoming.body;
  let response: Response;
  try {
    response = new Response(body, { status: incoming.status, statusText: incoming.statusText, headers });
  } catch {
    response = new Response(body, { status: incoming.status, headers });
  }
  // Response cannot be constructed with a url; callers resolve relative links against it.
  Object.defineProperties(response, { url: { value: req.url.href }, redirected: { value: redirected } });
  return response;
}

/** A fetch-compatible function bound to one egress policy; returns the global Response class. */
export function createEgressFetch(opts: EgressOptions): typeof fetch {
  const { policy, userAgent } = opts;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxRedirects = opts.maxRedirects ?? 0;
  const maxBytes = opts.maxResponseBytes ?? 10 * 1024 * 1024;
  const lookup = pinnedLookup(policy);
  // Per-client pools (no global state); idle sockets are unref'd by the agent and time out like
  // Node's global agent. A pooled socket was connected to a checked address, so reuse is safe.
  const agentOptions = { keepAlive: true, scheduling: 'lifo' as const, timeout: 5_000 };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);

  function send(req: Outgoing, signal: AbortSignal): Promise<Incoming> {
    const { url } = req;
    const origin = url.origin;
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (isIP(host)) {
      const reason = denialReason(policy, url.hostname, host);
      if (reason) return Promise.reject(new EgressDeniedError(url.hostname, host, reason));
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return Promise.reject(new EgressDeniedError(url.hostname || url.protocol, '', `unsupported scheme ${url.protocol}`));
    }
    const isHttps = url.protocol === 'https:';
    const headers: Record<string, string> = {};
    req.headers.forEach((value, name) => {
      headers[name] = value;
    });
    if (req.body) headers['content-length'] = String(req.body.length);
    else if (!['GET', 'HEAD', 'OPTIONS', 'DELETE'].includes(req.method)) headers['content-length'] = '0';

    return new Promise<Incoming>((resolve, reject) => {
      let settled = false;
      let clientRequest: http.ClientRequest | undefined;
      const finish = (err: unknown, value?: Incoming): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (err === undefined && value) return resolve(value);
        clientRequest?.destroy();
        reject(err);
      };
      const onAbort = (): void => finish(signal.reason);
      const networkError = (err: unknown): unknown => {
        if (err instanceof EgressError || signal.aborted) return signal.aborted ? signal.reason : err;
        const e = err as NodeJS.ErrnoException;
        if (e.code && HEADER_ERROR_CODES.has(e.code)) return new EgressNetworkError(`request to ${origin} has an invalid header`);
        return new EgressNetworkError(`request to ${origin} failed: ${e.message}`, { cause: err });
      };
      if (signal.aborted) return finish(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });

      try {
        clientRequest = (isHttps ? https : http).request({
          protocol: url.protocol,
          hostname: host,
          port: url.port || (isHttps ? 443 : 80),
          path: `${url.pathname}${url.search}`,
          method: req.method,
          headers,
          agent: isHttps ? httpsAgent : httpAgent,
          lookup,
          ...(isHttps ? { rejectUnauthorized: true, ...(isIP(host) ? {} : { servername: host }) } : {}),
        });
      } catch (err) {
        return finish(networkError(err));
      }
      clientRequest.on('error', (err) => finish(networkError(err)));
      clientRequest.on('response', (res) => {
        const declared = Number(res.headers['content-length']);
        const decoder = decoderFor(res.headers['content-encoding']);
        if (!decoder && declared > maxBytes) {
          res.destroy();
          return finish(new EgressResponseTooLargeError(origin, maxBytes));
        }
        const stream: Readable = decoder ? pipeline(res, decoder, () => {}) : res;
        const chunks: Buffer[] = [];
        let size = 0;
        stream.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > maxBytes) {
            stream.destroy();
            res.destroy();
            return finish(new EgressResponseTooLargeError(origin, maxBytes));
          }
          chunks.push(chunk);
        });
        stream.on('error', (err) => finish(networkError(err)));
        stream.on('end', () =>
          finish(undefined, {
            status: res.statusCode ?? 0,
            statusText: res.statusMessage ?? '',
            rawHeaders: res.rawHeaders,
            location: res.headers.location,
            decoded: decoder !== null,
            body: Buffer.concat(chunks, size),
          }),
        );
      });
      clientRequest.end(req.body ?? undefined);
    });
  }

  async function egressFetch(input: string | URL | Request, init?: RequestInit): Promise<Response> {
    const callerSignal = init?.signal ?? (input instanceof Request ? input.signal : undefined);
    if (callerSignal?.aborted) throw abortReason(callerSignal);
    let req = await prepare(input, init, userAgent);
    const follow = init?.redirect ?? 'follow';

    // One controller carries both the caller's abort and our deadline into every hop.
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new EgressTimeoutError(req.url.origin, timeoutMs)), timeoutMs);
    const onCallerAbort = (): void => controller.abort(abortReason(callerSignal!));
    callerSignal?.addEventListener('abort', onCallerAbort, { once: true });
    try {
      for (let hop = 0; ; hop++) {
        const incoming = await send(req, controller.signal);
        if (incoming.status < 200 || incoming.status > 599) {
          throw new EgressNetworkError(`response from ${req.url.origin} has invalid status ${incoming.status}`);
        }
        if (REDIRECT_STATUS.has(incoming.status) && incoming.location !== undefined) {
          if (follow === 'error') throw new EgressNetworkError(`request to ${req.url.origin} was redirected`);
          if (follow === 'follow' && hop < maxRedirects) {
            req = nextHop(req, incoming.status, incoming.location);
            continue;
          }
        }
        return toResponse(incoming, req, hop > 0);
      }
    } finally {
      clearTimeout(timer);
      callerSignal?.removeEventListener('abort', onCallerAbort);
    }
  }
  return egressFetch;
}

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
