import type { Readable } from 'node:stream';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { validatorCompiler } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { fastSerializerCompiler } from '../http/fast-serializer.js';
import { PayloadTooLargeError } from '../lib/errors.js';
import { booleanQuery, errors } from '../lib/schemas.js';
import { IMPORT_LIMITS, type ImportLimits, jsonArrayItems, ndjsonItems, runImport } from './bulk.js';
import { createConnectionBody, nangoImportBody, toConnectionInput } from './schemas.js';
import type { ConnectionService, ImportOutcome } from './service.js';

const NDJSON = 'application/x-ndjson';

const itemResult = z
  .object({
    index: z.int().describe('Position of the item in the request (0-based; in NDJSON, blank lines are not items)'),
    connection_id: z.string().nullable().describe('The connection the item names (generated when the item had none), if it could be read'),
    provider_config_key: z.string().nullable(),
    status: z.enum(['created', 'updated', 'error']),
    error: z.string().optional().describe('Error code (status `error`), as the single import would answer it'),
    message: z.string().optional().describe('What is wrong, naming the field'),
    details: z.array(z.object({ field: z.string(), message: z.string() })).optional(),
  })
  .meta({ id: 'ConnectionImportResult' });

const importResponse = z
  .object({
    created: z.int(),
    updated: z.int(),
    failed: z.int(),
    results: z.array(itemResult).describe('One result per item, in request order'),
  })
  .meta({ id: 'ConnectionImportResponse' });

const importQuery = z.object({
  webhooks: booleanQuery
    .optional()
    .describe(
      'Send the `auth` webhook (creation or override) for every imported connection, as a single import does. Off by default: a migration would otherwise announce every connection your backend just sent.',
    ),
});

function toResult(o: ImportOutcome): z.output<typeof itemResult> {
  const base = { index: o.index, connection_id: o.connectionId, provider_config_key: o.providerConfigKey, status: o.status };
  if (o.status !== 'error') return base;
  const details = Array.isArray(o.error.details) ? (o.error.details as { field: string; message: string }[]) : undefined;
  return { ...base, error: o.error.code, message: o.error.message, ...(details && { details }) };
}

const description = (item: string, limits: ImportLimits) =>
  `Imports many connections in one request, for moving from another platform. The body is a JSON array (up to ${limits.maxArrayItems} items) or NDJSON ` +
  `(\`Content-Type: ${NDJSON}\`, one item per line, read as it arrives, up to ${limits.maxLines} lines); either at most TERAPI_IMPORT_BODY_LIMIT_BYTES ` +
  `(default 64 MiB), 413 above. Each item is ${item}, validated and encrypted the same way; an item's error is reported in its result and does ` +
  `not stop the others. Items are written ${limits.batchSize} per transaction; new connections get their integration's syncs. Importing the same ` +
  `connection again updates it (\`updated\`). A body without a length that passes a limit is answered 413 after the items before it were imported.`;

/**
 * Bulk connection import: `POST /connections/import` (items of Nango's `POST /connections`), and
 * `POST /connection/import` and `/v1/connections/import` (items of `POST /connection`). The body is
 * taken as a stream: NDJSON is read one line at a time, and the request-wide body limit does not
 * apply (this route has its own).
 */
export const connectionImportRoutes: FastifyPluginAsyncZod<{ connections: ConnectionService; maxBytes: number }> = async (
  app,
  { connections: svc, maxBytes },
) => {
  const limits: ImportLimits = { ...IMPORT_LIMITS, maxBytes };
  // Encapsulated: only this plugin's routes take their bodies as streams.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser(['application/json', NDJSON], (req, payload, done) => {
    const length = Number(req.headers['content-length']);
    if (length > maxBytes) return done(new PayloadTooLargeError(`The import body is larger than ${maxBytes} bytes`), undefined);
    done(null, payload);
  });

  const routes = [
    {
      url: '/connections/import',
      operationId: 'nangoImportConnections',
      tags: ['Nango-compatible'],
      summary: 'Import many connections (NDJSON or JSON array)',
      item: nangoImportBody,
      itemText: 'the body of `POST /connections` (Nango import: `connection_id` generated when omitted)',
    },
    ...(['/connection/import', '/v1/connections/import'] as const).map((url) => ({
      url,
      operationId: url.startsWith('/v1') ? 'v1ImportConnections' : 'importConnections',
      tags: url.startsWith('/v1') ? ['v1'] : ['Connections'],
      summary: 'Import many connections (NDJSON or JSON array)',
      item: createConnectionBody,
      itemText: `the body of \`POST ${url.replace('/import', '')}\``,
    })),
  ];

  for (const r of routes) {
    app.post(r.url, {
      serializerCompiler: fastSerializerCompiler,
      // Items are validated one by one (an invalid item must not fail the others); the query as usual.
      validatorCompiler: (route) =>
        route.httpPart === 'body'
          ? (data: unknown) => ({ value: data })
          : validatorCompiler(route as unknown as Parameters<typeof validatorCompiler>[0]),
      schema: {
        operationId: r.operationId,
        tags: r.tags,
        summary: r.summary,
        description: description(r.itemText, limits),
        consumes: ['application/json', NDJSON],
        querystring: importQuery,
        body: z.array(r.item).min(1).max(limits.maxArrayItems),
        response: { 200: importResponse, ...errors(400, 401, 413, 415) },
      },
      handler: async (req) => {
        const body = req.body as unknown as Readable;
        let imported = 0;
        const ndjson = (req.headers['content-type'] ?? '').toLowerCase().startsWith(NDJSON);
        const items = ndjson ? ndjsonItems(body, limits, () => imported) : await jsonArrayItems(body, limits);
        const events = req.query.webhooks ?? false;
        const summary = await runImport({
          items,
          schema: r.item,
          toInput: toConnectionInput,
          importBatch: (entries) => svc.importBatch(req.environment.id, entries, { events }),
          batchSize: limits.batchSize,
          progress: (n) => (imported = n),
        });
        return { created: summary.created, updated: summary.updated, failed: summary.failed, results: summary.results.map(toResult) };
      },
    });
  }
};
