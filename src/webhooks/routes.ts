import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { cursorQuery, errors, isoDate } from '../lib/schemas.js';
import type { WebhookService, WebhookSettingsView } from './service.js';

const settings = z
  .object({
    urls: z.array(z.string()),
    secret_hint: z.string().nullable().describe('First characters of the signing secret'),
    previous_secret_expires_at: z.iso.datetime().nullable().describe('During a rotation: until when the previous secret also signs'),
    secret: z.string().optional().describe('The signing secret: present only in the answer that created or rotated it. Store it now.'),
  })
  .meta({ id: 'WebhookSettings' });

const toSettings = (v: WebhookSettingsView): z.input<typeof settings> => ({
  urls: v.urls,
  secret_hint: v.secretHint,
  previous_secret_expires_at: isoDate(v.previousSecretExpiresAt),
  ...(v.secret && { secret: v.secret }),
});

const webhookUrl = z
  .url({ protocol: /^https?$/ })
  .max(2000)
  .describe('Receives a signed POST per event');

const delivery = z.object({
  id: z.uuid(),
  event_id: z.string().describe('The `eventId` of the webhook body: opaque, the same for every delivery of one event'),
  type: z.enum(['auth', 'sync', 'async_action']),
  operation: z.string(),
  connection_id: z.string().nullable(),
  provider_config_key: z.string().nullable(),
  url: z.string(),
  status: z.enum(['pending', 'delivered', 'failed']),
  attempts: z.number().int(),
  last_status_code: z.number().int().nullable(),
  last_error: z.string().nullable(),
  last_attempt_at: z.iso.datetime().nullable(),
  delivered_at: z.iso.datetime().nullable(),
  created_at: z.iso.datetime(),
});

/** The environment's webhook URLs and signing secret, and the delivery log. */
export const webhookRoutes: FastifyPluginAsyncZod<{ webhooks: WebhookService }> = async (app, { webhooks: svc }) => {
  const tags = ['Webhooks'];

  app.get('/environment/webhooks', {
    schema: {
      operationId: 'getWebhookSettings',
      tags,
      summary: 'Get Webhook Settings',
      description: 'Where events are sent, and a hint of the signing secret.',
      response: { 200: settings, ...errors(401) },
    },
    handler: async (req) => toSettings(await svc.getSettings(req.environment.id)),
  });

  app.put('/environment/webhooks', {
    schema: {
      operationId: 'setWebhookSettings',
      tags,
      summary: 'Set Webhook URLs',
      description:
        'Sets the URLs that receive events (`auth`, `sync`, `async_action`). The first call creates the signing secret and returns it once. ' +
        'Each delivery carries `Terapi-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`, `Terapi-Webhook-Id` and `Terapi-Event`.',
      body: z.object({
        urls: z
          .array(webhookUrl)
          .max(5)
          .refine((u) => new Set(u).size === u.length, 'must not repeat a URL'),
      }),
      response: { 200: settings, ...errors(400, 401) },
    },
    handler: async (req) => toSettings(await svc.setUrls(req.environment.id, req.body.urls)),
  });

  app.post('/environment/webhooks/rotate-secret', {
    schema: {
      operationId: 'rotateWebhookSecret',
      tags,
      summary: 'Rotate Webhook Secret',
      description:
        'Creates a new signing secret (returned once). The previous one keeps signing too — a second `v1=` — until the overlap ends.',
      body: z
        .object({
          overlap_seconds: z
            .number()
            .int()
            .min(0)
            .max(7 * 86_400)
            .default(86_400),
        })
        .default({ overlap_seconds: 86_400 }),
      response: { 200: settings, ...errors(400, 401, 404) },
    },
    handler: async (req) => toSettings(await svc.rotateSecret(req.environment.id, req.body.overlap_seconds)),
  });

  app.get('/environment/webhooks/deliveries', {
    schema: {
      operationId: 'listWebhookDeliveries',
      tags,
      summary: 'List Webhook Deliveries',
      description: 'Every delivery, newest first, with attempts and the last answer: find a lost webhook and resend it.',
      querystring: z.object({
        status: z.enum(['pending', 'delivered', 'failed']).optional(),
        limit: z.coerce.number().int().min(1).max(200).default(50),
        cursor: cursorQuery,
      }),
      response: { 200: z.object({ deliveries: z.array(delivery), next_cursor: z.string().nullable() }), ...errors(400, 401) },
    },
    handler: async (req) => {
      const page = await svc.listDeliveries(req.environment.id, req.query);
      return {
        deliveries: page.deliveries.map((d) => ({
          id: d.id,
          event_id: d.eventId,
          type: d.type,
          operation: d.operation,
          connection_id: d.connectionId,
          provider_config_key: d.providerConfigKey,
          url: d.url,
          status: d.status,
          attempts: d.attempts,
          last_status_code: d.lastStatusCode,
          last_error: d.lastError,
          last_attempt_at: isoDate(d.lastAttemptAt),
          delivered_at: isoDate(d.deliveredAt),
          created_at: d.createdAt.toISOString(),
        })),
        next_cursor: page.nextCursor,
      };
    },
  });

  app.post('/environment/webhooks/deliveries/:id/retry', {
    schema: {
      operationId: 'retryWebhookDelivery',
      tags,
      summary: 'Resend Webhook Delivery',
      description: 'Sends a delivery again (with a fresh signature), whatever its status.',
      params: z.object({ id: z.uuid() }),
      response: { 202: z.object({ id: z.uuid(), status: z.literal('pending') }), ...errors(400, 401, 404) },
    },
    handler: async (req, reply) => {
      await svc.retryDelivery(req.environment.id, req.params.id);
      return reply.code(202).send({ id: req.params.id, status: 'pending' as const });
    },
  });
};
