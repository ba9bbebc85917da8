import http from 'node:http';
import { isIP } from 'node:net';
import { type Readable, pipeline } from 'node:stream';
import { createPinnedRequester, denialReason, type EgressPolicy, type HostLookup, pinnedLookup } from '../egress.js';
import { EgressDeniedError, EgressError, EgressNetworkError, EgressTimeoutError, INVALID_HEADER_CODES } from './errors.js';

/**
 * The egress client for bodies that must not be held in memory (the proxy's uploads and
 * downloads): the same policy, DNS pinning and error types as `createEgressFetch`, but the request
 * body is piped from a stream and the response is handed back as a stream as soon as its headers
 * arrive. Redirects are never followed (the caller gets the 3xx), and nothing is decoded.
 */

export interface StreamedRequest {
  url: URL;
  method: string;
  /** lower-case names; sent as given (no defaults are added) */
  headers: Record<string, string>;
  /** a Buffer is sent with its length; a stream is piped (chunked unless `content-length` is given) */
  body: Buffer | Readable | null;
  signal?: AbortSignal;
}

export interface StreamedResponse {
  status: number;
  statusText: string;
  /** as received: name, value, name, value, … */
  rawHeaders: string[];
  /** the raw (still encoded) body; errors with an EgressError when the socket drops or idles */
  body: Readable;
}

export interface EgressStreamOptions {
  policy: EgressPolicy;
  /**
   * Longest silence on the socket (connecting, sending, waiting for headers, reading the body):
   * a transfer of any size passes as long as bytes keep moving; a hung server fails after this.
   */
  idleTimeoutMs: number;
  lookup?: HostLookup;
}

export type EgressStream = (req: StreamedRequest) => Promise<StreamedResponse>;

export function createEgressStream(opts: EgressStreamOptions): EgressStream {
  const { policy, idleTimeoutMs } = opts;
  const lookup = opts.lookup ? pinnedLookup(policy, opts.lookup) : pinnedLookup(policy);
  const request = createPinnedRequester(lookup);

  return (req) => {
    const { url } = req;
    const origin = url.origin;
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return Promise.reject(new EgressDeniedError(url.hostname || url.protocol, '', `unsupported scheme ${url.protocol}`));
    }
    if (url.username || url.password) return Promise.reject(new TypeError('URLs with embedded credentials are not allowed'));
    const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    if (isIP(host)) {
      const reason = denialReason(policy, url.hostname, host);
      if (reason) return Promise.reject(new EgressDeniedError(url.hostname, host, reason));
    }
    const isHttps = url.protocol === 'https:';
    const headers = { ...req.headers };
    if (Buffer.isBuffer(req.body)) headers['content-length'] = String(req.body.length);
    else if (!req.body && !['GET', 'HEAD', 'OPTIONS', 'DELETE'].includes(req.method)) headers['content-length'] = '0';

    return new Promise<StreamedResponse>((resolve, reject) => {
      let connected = false;
      let responded = false;
      let clientRequest: http.ClientRequest;
      const asEgressError = (err: unknown): Error => {
        if (err instanceof EgressError) return err;
        const e = err as NodeJS.ErrnoException;
        if (e.code && INVALID_HEADER_CODES.has(e.code))
          return new EgressNetworkError(`request to ${origin} has an invalid header`, { errno: e.code, sent: false });
        return new EgressNetworkError(`request to ${origin} failed: ${e.message}`, { cause: err, errno: e.code, sent: connected });
      };
      const fail = (err: unknown): void => {
        const error = asEgressError(err);
        if (!responded) reject(error);
        clientRequest?.destroy(error);
      };
      const onAbort = (): void => fail(req.signal?.reason ?? new Error('aborted'));
      if (req.signal?.aborted) return onAbort();
      req.signal?.addEventListener('abort', onAbort, { once: true });

      try {
        clientRequest = request(url, req.method, headers);
      } catch (err) {
        return fail(err);
      }
      clientRequest.setTimeout(idleTimeoutMs, () => fail(new EgressTimeoutError(origin, idleTimeoutMs, connected)));
      clientRequest.on('socket', (socket) => {
        if (clientRequest.reusedSocket) connected = true;
        else socket.once(isHttps ? 'secureConnect' : 'connect', () => (connected = true));
      });
      clientRequest.on('close', () => req.signal?.removeEventListener('abort', onAbort));
      clientRequest.on('error', (err) => {
        if (!responded) reject(asEgressError(err));
      });
      clientRequest.on('response', (res) => {
        responded = true;
        // An error of the request after the headers (idle timeout, abort) ends the body with it.
        clientRequest.on('error', (err) => res.destroy(asEgressError(err)));
        res.once('end', () => req.signal?.removeEventListener('abort', onAbort));
        res.on('aborted', () => res.destroy(new EgressNetworkError(`response from ${origin} ended early (connection closed)`)));
        resolve({ status: res.statusCode ?? 0, statusText: res.statusMessage ?? '', rawHeaders: res.rawHeaders, body: res });
      });

      const body = req.body;
      if (body === null || Buffer.isBuffer(body)) clientRequest.end(body ?? undefined);
      else {
        pipeline(body, clientRequest, (err) => {
          // The upload failed (the caller went away, a body limit): the provider must not get a
          // truncated body as if it were whole, so the request is torn down.
          if (err) fail(err);
        });
      }
    });
  };
}
