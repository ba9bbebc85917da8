import { promises as dns, type LookupAddress } from 'node:dns';
import http from 'node:http';
import https from 'node:https';
import { isIP, type LookupFunction } from 'node:net';
import { pipeline, type Readable } from 'node:stream';
import zlib from 'node:zlib';
import { classifyAddress } from './egress/addresses.js';
import {
  abortReason,
  EgressDeniedError,
  EgressError,
  EgressHostNotFoundError,
  EgressNetworkError,
  EgressResponseTooLargeError,
  EgressTimeoutError,
  INVALID_HEADER_CODES,
} from './egress/errors.js';

export * from './egress/errors.js';

export { classifyAddress, isPrivateAddress } from './egress/addresses.js';
export { isIdempotentMethod, type RetryInfo, type RetryOptions, serverRequestedDelay, withRetries } from './egress/retry.js';

/** Resolves a host name to every address it has (node's `dns.promises.lookup` with `all: true`). */
export type HostLookup = (hostname: string, options: { family: number | 'IPv4' | 'IPv6'; hints: number }) => Promise<LookupAddress[]>;

const systemLookup: HostLookup = (hostname, options) => dns.lookup(hostname, { all: true, family: options.family, hints: options.hints });

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
  /** DNS resolution; default the system resolver (tests answer without asking the network) */
  lookup?: HostLookup;
}

/** Why the policy refuses `address` (reached as `host`), or null when it may be reached. */
export function denialReason(policy: EgressPolicy, host: string, address: string): string | null {
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
export function pinnedLookup(policy: EgressPolicy, resolve: HostLookup = systemLookup): LookupFunction {
  return (hostname, options, callback) => {
    resolve(hostname, { family: options.family ?? 0, hints: options.hints ?? 0 }).then(
      (addresses) => {
        for (const { address } of addresses) {
          const reason = denialReason(policy, hostname, address);
          if (reason) return callback(new EgressDeniedError(hostname, address, reason), '');
        }
        const first = addresses[0];
        if (!first) return callback(new EgressHostNotFoundError(hostname), '');
        if (options.all) return callback(null, addresses);
        callback(null, first.address, first.family);
      },
      (err: NodeJS.ErrnoException) => {
        // NXDOMAIN is an answer, not an outage: the name does not exist and will not tomorrow.
        // Anything else (EAI_AGAIN: no answer from the resolver) may be temporary.
        callback(err.code === 'ENOTFOUND' ? new EgressHostNotFoundError(hostname) : err, '');
      },
    );
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

/**
 * Sends HTTP(S) client requests through connection pools of their own (no global state), resolving
 * hosts with a pinned lookup: a pooled socket was connected to a checked address, so reuse is safe.
 * Idle sockets are unref'd by the agent and time out like Node's global agent.
 */
export function createPinnedRequester(lookup: LookupFunction) {
  const agentOptions = { keepAlive: true, scheduling: 'lifo' as const, timeout: 5_000 };
  const httpAgent = new http.Agent(agentOptions);
  const httpsAgent = new https.Agent(agentOptions);
  return (url: URL, method: string, headers: http.OutgoingHttpHeaders): http.ClientRequest => {
    const isHttps = url.protocol === 'https:';
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    return (isHttps ? https : http).request({
      protocol: url.protocol,
      hostname: host,
      port: url.port || (isHttps ? 443 : 80),
      path: `${url.pathname}${url.search}`,
      method,
      headers,
      agent: isHttps ? httpsAgent : httpAgent,
      lookup,
      ...(isHttps ? { rejectUnauthorized: true, ...(isIP(host) ? {} : { servername: host }) } : {}),
    });
  };
}

/** A fetch-compatible function bound to one egress policy; returns the global Response class. */
export function createEgressFetch(opts: EgressOptions): typeof fetch {
  const { policy, userAgent } = opts;
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const maxRedirects = opts.maxRedirects ?? 0;
  const maxBytes = opts.maxResponseBytes ?? 10 * 1024 * 1024;
  const lookup = pinnedLookup(policy, opts.lookup ?? systemLookup);
  const request = createPinnedRequester(lookup);

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
      // Until a connection to the server exists, nothing of the request can have reached it.
      let connected = false;
      let clientRequest: http.ClientRequest | undefined;
      const finish = (err: unknown, value?: Incoming): void => {
        if (settled) return;
        settled = true;
        signal.removeEventListener('abort', onAbort);
        if (err === undefined && value) return resolve(value);
        clientRequest?.destroy();
        reject(err instanceof Error ? err : new Error(String(err)));
      };
      const aborted = (): unknown => {
        const reason: unknown = signal.reason;
        return reason instanceof EgressTimeoutError && !connected ? new EgressTimeoutError(reason.origin, reason.timeoutMs, false) : reason;
      };
      const onAbort = (): void => finish(aborted());
      const networkError = (err: unknown): unknown => {
        if (signal.aborted) return aborted();
        if (err instanceof EgressError) return err;
        const e = err as NodeJS.ErrnoException;
        if (e.code && INVALID_HEADER_CODES.has(e.code))
          return new EgressNetworkError(`request to ${origin} has an invalid header`, { errno: e.code, sent: false });
        return new EgressNetworkError(`request to ${origin} failed: ${e.message}`, { cause: err, errno: e.code, sent: connected });
      };
      if (signal.aborted) return finish(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });

      try {
        clientRequest = request(url, req.method, headers);
      } catch (err) {
        return finish(networkError(err));
      }
      clientRequest.on('socket', (socket) => {
        // A pooled socket is already connected; a new one is not until its (TLS) handshake is done.
        if (clientRequest.reusedSocket) connected = true;
        else socket.once(isHttps ? 'secureConnect' : 'connect', () => (connected = true));
      });
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
