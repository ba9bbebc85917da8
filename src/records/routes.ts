import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { connectionIdSchema, cursorQuery, errors, providerConfigKey } from '../lib/schemas.js';
import type { RecordService } from './service.js';

const recordMetadata = z.object({
  first_seen_at: z.iso.datetime(),
  last_modified_at: z.iso.datetime(),
  last_action: z.enum(['ADDED', 'UPDATED', 'DELETED']),
  deleted_at: z.iso.datetime().nullable(),
  cursor: z.string().describe('Cursor positioned right after this record'),
});

const recordsPage = z
  .object({
    records: z.array(z.object({ id: z.string(), _nango_metadata: recordMetadata }).catchall(z.unknown())),
    next_cursor: z.string().nullable().describe('Pass as `cursor` for the next page; null at the end of the feed'),
  })
  .meta({ id: 'RecordsPage' });

const actions = ['added', 'updated', 'deleted'] as const;

/** Nango-compatible `GET /records`: a model's records as a change feed, paged by cursor. */
export const recordRoutes: FastifyPluginAsyncZod<{ records: RecordService }> = async (app, { records: svc }) => {
  app.get('/records', {
    schema: {
      operationId: 'listRecords',
      tags: ['Records'],
      summary: 'List Records',
      description:
        'Records of one model for one connection, in the order they last changed. Paging with `cursor` while a sync writes never skips or repeats a change: a record changed after you read it comes again later with its new content. ' +
        '`modified_after` and `filter` (added, updated, deleted) narrow the feed; deleted records carry `deleted_at`.',
      headers: z.object({ 'connection-id': connectionIdSchema, 'provider-config-key': providerConfigKey }),
      querystring: z.object({
        model: z
          .string()
          .min(1)
          .max(100)
          .regex(/^[A-Za-z][A-Za-z0-9_]*$/, 'must be a model name such as GithubIssue'),
        cursor: cursorQuery,
        limit: z.coerce.number().int().min(1).max(10_000).default(100).describe('Page size, 1 to 10,000 (default 100)'),
        modified_after: z.iso
          .datetime({ offset: true })
          .transform((v) => new Date(v))
          // In UTC, as the database compares it: year 0 (and 10000 after an offset) is past what PostgreSQL reads from ISO text.
          .refine(
            (d) => !Number.isNaN(d.getTime()) && d.getUTCFullYear() >= 1 && d.getUTCFullYear() <= 9999,
            'must be a time between the years 1 and 9999 (UTC)',
          )
          .optional()
          .describe('Only records changed after this time (ISO 8601)'),
        filter: z
          .string()
          .max(50)
          .transform((s, ctx) => {
            const parts = s
              .split(',')
              .map((p) => p.trim().toLowerCase())
              .filter(Boolean);
            for (const p of parts)
              if (!(actions as readonly string[]).includes(p))
                ctx.addIssue({ code: 'custom', message: `"${p}" is not one of added, updated, deleted` });
            return parts as (typeof actions)[number][];
          })
          .optional()
          .describe('Comma-separated: added, updated, deleted'),
        ids: z
          .union([z.string().max(255), z.array(z.string().max(255)).max(1000)])
          .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean))
          .optional()
          .describe('Only these record ids (repeat the parameter or separate with commas)'),
      }),
      response: { 200: recordsPage, ...errors(400, 401, 404) },
    },
    handler: async (req, reply) => {
      const q = req.query;
      const body = await svc.list(req.environment.id, {
        providerConfigKey: req.headers['provider-config-key'],
        connectionId: req.headers['connection-id'],
        model: q.model,
        cursor: q.cursor,
        limit: q.limit,
        modifiedAfter: q.modified_after,
        filter: q.filter,
        ids: q.ids,
      });
      // Already JSON bytes (records are stored as JSON text): a Buffer is sent as is, never serialized.
      return reply.type('application/json; charset=utf-8').send(body as never);
    },
  });
};
