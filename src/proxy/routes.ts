import type { Readable } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { connectionIdSchema, errors, providerConfigKey } from '../lib/schemas.js';
import { forwardedHeaders, limitBody, PayloadTooLargeError, readBody, splitEndpoint } from './http.js';
import type { ProxyService } from './service.js';

/** Marks an answer as Terapi's own (a missing header, an unknown connection, a timeout), not the provider's. */
export const ERROR_HEADER = 'x-terapi-error';

/** Bodies up to this size are held in memory so that a retry or the retry after a refresh can send them again. */
const REPLAYABLE_BYTES = 1024 * 1024;

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'] as const;

const headers = z.looseObject({
  'connection-id': connectionIdSchema.describe('The connection whose credentials the call carries'),
  'provider-config-key': providerConfigKey.describe('The integration (unique key) of the connection'),
  retries: z
    .string()
    .regex(/^([0-9]|10)$/, 'must be a number from 0 to 10')
    .optional()
    .describe(
      'Extra attempts on 429, 5xx and network failures, with exponential backoff honouring Retry-After and rate-limit reset headers (default 0). Only bodies up to 1 MiB with a Content-Length are sent again.',
    ),
  'retry-on': z
    .string()
    .regex(/^[1-5][0-9]{2}(,[1-5][0-9]{2}){0,19}$/, 'must be a comma-separated list of status codes')
    .optional()
    .describe('More statuses to retry, comma-separated'),
  'base-url-override': z
    .union([z.literal(''), z.url({ protocol: /^https?$/ }).max(2000)])
    .optional()
    .describe("Another API base URL; only for integrations whose provider allows overriding it, and subject to Terapi's egress policy"),
  decompress: z
    .enum(['true', 'false'])
    .optional()
    .describe('true: decode a gzip/deflate/br answer (Content-Encoding and Content-Length are dropped)'),
});

const providerAnswer = z.unknown().describe("The provider's answer: its status, headers (without hop-by-hop headers) and body, unchanged");

/**
 * `/proxy/*` and `/v1/proxy/*`: any provider API call with a connection's credentials. Bodies are
 * never parsed here: the request stream goes to the provider as it came, whatever its type.
 */
export const proxyRoutes: FastifyPluginAsyncZod<{ proxy: ProxyService }> = async (app, { proxy }) => {
  const { bodyLimitBytes } = proxy;
  // Scoped to this plugin: every content type (JSON, forms, files) arrives as the raw request stream.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', (_req, payload, done) => done(null, payload));
  app.addHook('onError', async (_req, reply) => {
    reply.header(ERROR_HEADER, 'true');
  });

  for (const [prefix, tag, idPrefix] of [
    ['/proxy', 'Proxy', 'proxy'],
    ['/v1/proxy', 'v1', 'v1Proxy'],
  ] as const) {
    for (const method of METHODS) {
      app.route({
        method: method,
        url: `${prefix}/*`,
        exposeHeadRoute: false,
        schema: {
          operationId: `${idPrefix}${method[0]}${method.slice(1).toLowerCase()}`,
          tags: [tag],
          summary: `Proxy a ${method} request to the provider`,
          description:
            "Sends the request to the provider's API (the path after /proxy, the query string and the body unchanged) with the connection's credentials placed as the provider expects, and returns the provider's answer unchanged, streamed. Headers prefixed `Nango-Proxy-` are sent with the prefix removed; the caller's Authorization never is. Terapi's own failures carry `X-Terapi-Error: true`.",
          headers,
          params: z.object({ '*': z.string().describe('The path on the provider API, after its base URL (e.g. `user/repos`)') }),
          response: { 200: providerAnswer, ...errors(400, 401, 403, 404, 413, 424, 502, 503, 504) },
        },
        handler: async (req, reply) => {
          const { path, query } = splitEndpoint(req.raw.url!.slice(prefix.length));
          const h = req.headers as z.output<typeof headers>;
          const incoming = req.body as Readable | undefined;
          let body: Buffer | Readable | null = null;
          if (incoming) {
            const declared = req.headers['content-length'] === undefined ? NaN : Number(req.headers['content-length']);
            if (declared > bodyLimitBytes) throw new PayloadTooLargeError(bodyLimitBytes);
            body = declared <= REPLAYABLE_BYTES ? await readBody(incoming) : limitBody(incoming, bodyLimitBytes);
          }
          // The caller hanging up ends the provider call (and its upload or download) too.
          const aborted = new AbortController();
          reply.raw.on('close', () => {
            if (!reply.raw.writableEnded) aborted.abort(new Error('the caller closed the connection'));
          });
          const result = await proxy.forward({
            environmentId: req.environment.id,
            providerConfigKey: h['provider-config-key'],
            connectionId: h['connection-id'],
            method: req.method,
            path,
            query,
            headers: forwardedHeaders(req.raw.rawHeaders, body !== null),
            body,
            retries: h.retries ? Number(h.retries) : 0,
            retryOn: h['retry-on'] ? h['retry-on'].split(',').map(Number) : [],
            baseUrlOverride: h['base-url-override'] || undefined,
            decompress: h.decompress === 'true',
            signal: aborted.signal,
          });
          // The provider's status, whatever it is: the declared ones only document Terapi's own.
          reply.code(result.status as 200).headers(result.headers);
          if (!result.body) return reply.send();
          result.body.on('error', (err) =>
            // Headers are gone already: the caller sees the connection close before the body's end.
            req.log.warn({ error: err.message, providerConfigKey: h['provider-config-key'] }, 'proxy: the provider answer broke off'),
          );
          return reply.send(result.body);
        },
      });
    }
  }
};
