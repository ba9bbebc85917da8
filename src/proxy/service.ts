import type { Readable } from 'node:stream';
import zlib from 'node:zlib';
import type { StoredCredentials } from '../connections/credentials.js';
import type { IntegrationLookup } from '../integrations/service.js';
import { EgressDeniedError, EgressError, EgressHostNotFoundError, EgressTimeoutError, withRetries } from '../lib/egress.js';
import type { EgressStream, StreamedResponse } from '../lib/egress/stream.js';
import { AppError, FailedDependencyError, NotFoundError, ValidationError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { type Catalog, genericProviders } from '../providers/catalog.js';
import { credentialHeaders } from '../providers/placement.js';
import type { Provider } from '../providers/schema.js';
import { apiBaseUrl } from '../providers/template.js';
import type { TokenService } from '../tokens/service.js';
import { providerUrl, returnedHeaders } from './http.js';

export interface ProxyCall {
  environmentId: string;
  providerConfigKey: string;
  connectionId: string;
  method: string;
  /** checked by `splitEndpoint`: a path under the base URL */
  path: string;
  /** the caller's raw query string (`?a=1`), or '' */
  query: string;
  /** headers for the provider (see `forwardedHeaders`) */
  headers: Record<string, string>;
  /** a Buffer can be sent again (retries, the retry after a refresh); a stream only once */
  body: Buffer | Readable | null;
  /** extra attempts on 429, 5xx and network failures (only when the body can be sent again) */
  retries: number;
  /** statuses retried besides 429 and 5xx */
  retryOn: readonly number[];
  baseUrlOverride?: string;
  /** decode a compressed answer (and drop its Content-Encoding and Content-Length) */
  decompress: boolean;
  signal: AbortSignal;
}

export interface ProxyResult {
  status: number;
  headers: Record<string, string | string[]>;
  /** null for HEAD and the statuses that have no body */
  body: Readable | null;
  attempts: number;
}

const NO_BODY_STATUS = new Set([204, 205, 304]);
const RETRYABLE = new Set([429, 500, 502, 503, 504]);

/** Terapi's own failures reaching the provider: each names the provider's origin, never a header or body. */
function asAppError(err: unknown, viaOverride: boolean, signal: AbortSignal): unknown {
  // The caller hung up: nobody reads this answer, and it is no failure of Terapi's or the provider's.
  if (signal.aborted) return new AppError(499, 'client_closed_request', 'The caller closed the connection');
  if (!(err instanceof EgressError)) return err;
  if (err instanceof EgressDeniedError)
    return viaOverride
      ? ValidationError.field('base-url-override', `is refused by the egress policy: ${err.reason}`)
      : new AppError(403, 'egress_denied', err.message);
  if (err instanceof EgressTimeoutError) return new AppError(504, 'provider_timeout', err.message);
  if (err instanceof EgressHostNotFoundError) return new AppError(502, 'provider_unreachable', err.message);
  return new AppError(502, 'provider_unreachable', err.message);
}

const refreshable = (c: StoredCredentials) => c.type === 'OAUTH2_CC' || (c.type === 'OAUTH2' && Boolean(c.refresh_token));

/** A fetch Response carrying a streamed answer's status and headers (what the retry policy reads). */
function headersOnly(res: StreamedResponse): Response {
  const headers = new Headers();
  for (let i = 0; i + 1 < res.rawHeaders.length; i += 2) {
    try {
      headers.append(res.rawHeaders[i]!, res.rawHeaders[i + 1]!);
    } catch {
      // a header the Fetch spec cannot represent; the retry policy does not need it
    }
  }
  return new Response(null, { status: res.status >= 200 && res.status <= 599 ? res.status : 502, headers });
}

/**
 * Calls a provider's API with a connection's credentials: the base URL and auth placement come
 * from the catalog (and the integration's overrides), the token from the token service (refreshed
 * once across processes); the answer comes back as it was sent, streamed.
 */
export function createProxyService(deps: {
  catalog: Catalog;
  tokens: Pick<TokenService, 'getToken'>;
  integrations: Pick<IntegrationLookup, 'find' | 'findById'>;
  egress: EgressStream;
  allowProviderUrlOverrides: boolean;
  maxRetryDelayMs: number;
  /** largest request body passed on */
  bodyLimitBytes: number;
  log: Logger;
}) {
  const { catalog, tokens, integrations, egress } = deps;

  async function credentialsOf(call: ProxyCall, force: boolean) {
    try {
      return await tokens.getToken(call.environmentId, call.providerConfigKey, call.connectionId, { cached: !force, force });
    } catch (err) {
      if (err instanceof NotFoundError && !(await integrations.find(call.environmentId, call.providerConfigKey)))
        throw NotFoundError.integration(call.providerConfigKey);
      throw err;
    }
  }

  const overridable = (p: Provider) =>
    genericProviders.has(p.name) || deps.allowProviderUrlOverrides || Boolean(p.overridable_urls?.includes('api_base_url'));

  return {
    bodyLimitBytes: deps.bodyLimitBytes,
    async forward(call: ProxyCall): Promise<ProxyResult> {
      let { connection, credentials } = await credentialsOf(call, false);
      const provider = catalog.get(connection.provider);
      if (!provider) throw new FailedDependencyError('provider_unknown', `Provider "${connection.provider}" is not in the catalog`);
      const integration = await integrations.findById(connection.environmentId, connection.integrationId);
      if (!integration) throw NotFoundError.integration(call.providerConfigKey);
      if (call.baseUrlOverride && !overridable(provider))
        throw ValidationError.field(
          'base-url-override',
          `integration "${call.providerConfigKey}" (${provider.name}) does not allow overriding its API base URL`,
        );
      const baseUrl = call.baseUrlOverride || apiBaseUrl(provider, integration.urlOverrides, connection.connectionConfig);

      const replayable = call.body === null || Buffer.isBuffer(call.body);
      let attempts = 0;
      let refreshed = false;
      let last: StreamedResponse | undefined;
      const discard = () => {
        last?.body.destroy();
        last = undefined;
      };
      const send = async (): Promise<StreamedResponse> => {
        discard();
        attempts++;
        const placed = credentialHeaders(provider, credentials);
        const url = providerUrl(baseUrl, call.path, call.query, placed.query);
        const headers = { ...call.headers, ...placed.headers };
        if (call.decompress) headers['accept-encoding'] = 'gzip, deflate, br';
        last = await egress({ url, method: call.method, headers, body: call.body, signal: call.signal });
        return last;
      };
      const attempt = async (): Promise<Response> => {
        let res = await send();
        if (res.status === 401 && !refreshed && replayable && refreshable(credentials)) {
          refreshed = true;
          // The token may have been revoked early or rotated elsewhere: refresh once and try again.
          ({ connection, credentials } = await credentialsOf(call, true));
          res = await send();
        }
        return headersOnly(res);
      };

      await withRetries(attempt, {
        retries: replayable ? call.retries : 0,
        baseDelayMs: 500,
        maxDelayMs: deps.maxRetryDelayMs,
        retryOn: (r) => RETRYABLE.has(r.status) || call.retryOn.includes(r.status),
        // The caller asked for retries of this very call: it knows whether the endpoint tolerates them.
        idempotent: true,
        onRetry: (r) =>
          deps.log.info(
            {
              providerConfigKey: call.providerConfigKey,
              connectionId: call.connectionId,
              attempt: r.attempt,
              status: r.status,
              error: r.error,
              delayMs: r.delayMs,
            },
            'proxy: retrying the provider call',
          ),
        signal: call.signal,
      }).catch((err: unknown) => {
        discard();
        throw asAppError(err, Boolean(call.baseUrlOverride), call.signal);
      });
      const res = last!;
      const headers = returnedHeaders(res.rawHeaders);
      let body: Readable | null = res.body;
      if (call.method === 'HEAD' || NO_BODY_STATUS.has(res.status)) {
        res.body.on('error', () => undefined); // nobody reads it: an abort now is no failure
        res.body.resume();
        body = null;
      } else if (call.decompress) {
        const decoder = decoderFor(headers['content-encoding']);
        if (decoder) {
          // The decoded length is unknown until the end: the answer goes out chunked.
          delete headers['content-encoding'];
          delete headers['content-length'];
          res.body.on('error', (err) => decoder.destroy(err));
          body = res.body.pipe(decoder);
        }
      }
      return { status: res.status, headers, body, attempts };
    },
  };
}

function decoderFor(encoding: string | string[] | undefined): zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress | null {
  switch (typeof encoding === 'string' ? encoding.trim().toLowerCase() : undefined) {
    case 'gzip':
    case 'x-gzip':
      return zlib.createGunzip();
    case 'deflate':
      return zlib.createInflate();
    case 'br':
      return zlib.createBrotliDecompress();
    default:
      return null;
  }
}

export type ProxyService = ReturnType<typeof createProxyService>;
