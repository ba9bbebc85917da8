import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ApiFamily } from '../http/families.js';
import { ValidationError } from '../lib/errors.js';
import { connectionIdSchema, errorResponse, errors, providerConfigKey } from '../lib/schemas.js';
import type { RunRow } from '../runs/repository.js';
import { functionName } from '../functions/schemas.js';
import type { ActionService } from './service.js';

const triggerBody = z
  .object({
    connection_id: connectionIdSchema.optional().describe('The connection to act for (or the `Connection-Id` header)'),
    provider_config_key: providerConfigKey.optional().describe('The integration (or the `Provider-Config-Key` header)'),
    action_name: functionName,
    input: z.record(z.string(), z.unknown()).optional().describe("Input of the action, validated against the action's schema"),
  })
  .meta({ id: 'TriggerActionRequest' });

const triggerHeaders = z.object({
  'connection-id': connectionIdSchema.optional(),
  'provider-config-key': providerConfigKey.optional(),
  'x-async': z.enum(['true', 'false', '1', '0']).optional().describe('`true`: answer at once with the run id and a status URL'),
});

export const actionResponse = z
  .object({
    success: z.boolean(),
    action_name: z.string(),
    output: z.unknown().describe('Output of the action (per its schema)'),
    error: z.string().nullable().describe('Error message if the action failed'),
  })
  .meta({ id: 'ActionResponse' });

const pending = z
  .object({
    id: z.uuid(),
    status_url: z.string(),
    statusUrl: z.string().describe("Nango-compatible: the status URL's path (Nango's SDK prefixes it with its host)"),
    status: z.enum(['queued', 'running']),
  })
  .meta({ id: 'ActionPending' });

const actionFailure = errorResponse
  .extend({
    // Absent when the action was refused before it ran (a connection that must be re-authorized).
    action_name: z.string().optional(),
    run_id: z.uuid().optional(),
    upstream: z
      .object({ status: z.number().int(), body: z.string() })
      .optional()
      .describe("The provider's answer, when a provider call failed"),
  })
  .meta({ id: 'ActionFailure' });

const actionRun = z
  .object({
    id: z.uuid(),
    action_name: z.string(),
    status: z.enum(['queued', 'running', 'success', 'error']),
    success: z.boolean().nullable(),
    output: z.unknown(),
    error: z.string().nullable(),
    upstream: z.object({ status: z.number().int(), body: z.string() }).nullable(),
    created_at: z.iso.datetime(),
    finished_at: z.iso.datetime().nullable(),
  })
  .meta({ id: 'ActionRun' });

function failureStatus(run: RunRow): 424 | 504 {
  return run.error?.code === 'time_limit' ? 504 : 424;
}

/** Seed `001` `POST /action/trigger` (and `/v1/actions/trigger`). */
export const actionRoutes: FastifyPluginAsyncZod<{ actions: ActionService; family: ApiFamily; serverUrl: string }> = async (
  app,
  { actions: svc, family, serverUrl },
) => {
  app.post(family.paths.actionTrigger, {
    schema: {
      operationId: family.operationId('triggerAction'),
      tags: family.tags('Actions'),
      summary: 'Trigger Action',
      description:
        "Runs an action for a connection on a worker and answers with its output. The input is validated against the action's schema before anything runs. " +
        'With `X-Async: true` the answer is immediate (202, with a status URL; an `async_action` webhook follows). ' +
        "A failed provider call answers 424 with the provider's status and body; an action that runs out of time answers 504.",
      body: triggerBody,
      headers: triggerHeaders,
      response: { 200: actionResponse, 202: pending, ...errors(400, 401, 404), 424: actionFailure, 504: actionFailure },
    },
    handler: async (req, reply) => {
      const h = req.headers;
      const connectionId = req.body.connection_id ?? h['connection-id'];
      const key = req.body.provider_config_key ?? h['provider-config-key'];
      if (!connectionId) throw ValidationError.field('connection_id', 'is required (in the body or the Connection-Id header)');
      if (!key) throw ValidationError.field('provider_config_key', 'is required (in the body or the Provider-Config-Key header)');
      const async = h['x-async'] === 'true' || h['x-async'] === '1';
      const outcome = await svc.trigger(req.environment.id, {
        connectionId,
        providerConfigKey: key,
        actionName: req.body.action_name,
        input: req.body.input ?? {},
        async,
      });
      if (outcome.state === 'pending') {
        const { id, status } = outcome.run;
        return reply.code(202).send({
          id,
          status_url: `${serverUrl}${family.paths.action}/${id}`,
          statusUrl: `${family.paths.action}/${id}`,
          status: status === 'running' ? 'running' : 'queued',
        });
      }
      const run = outcome.run;
      if (run.status === 'success') return { success: true, action_name: run.functionName, output: run.output, error: null };
      const code = run.error?.upstream ? 'provider_error' : run.error?.code === 'time_limit' ? 'action_timeout' : 'action_failed';
      return reply.code(failureStatus(run)).send({
        error: code,
        message: run.error?.message ?? 'The action failed',
        action_name: run.functionName,
        run_id: run.id,
        ...(run.error?.upstream && { upstream: run.error.upstream }),
      });
    },
  });
};

/** `GET /action/{id}` (and `/v1/actions/{id}`): the outcome of an action run (asynchronous ones in particular). */
export const actionStatusRoutes: FastifyPluginAsyncZod<{ actions: ActionService; family: ApiFamily }> = async (
  app,
  { actions: svc, family },
) => {
  app.get(`${family.paths.action}/:id`, {
    schema: {
      operationId: family.operationId('getActionResult'),
      tags: family.tags('Actions'),
      summary: 'Get Action Result',
      description: 'The status of an action run and, once done, its output or error.',
      params: z.object({ id: z.uuid() }),
      response: { 200: actionRun, ...errors(400, 401, 404) },
    },
    handler: async (req) => {
      const r = await svc.get(req.environment.id, req.params.id);
      const done = r.status === 'success' || r.status === 'error';
      return {
        id: r.id,
        action_name: r.functionName,
        status: r.status,
        success: done ? r.status === 'success' : null,
        output: r.status === 'success' ? r.output : null,
        error: r.error?.message ?? null,
        upstream: r.error?.upstream ?? null,
        created_at: r.createdAt.toISOString(),
        finished_at: r.endedAt?.toISOString() ?? null,
      };
    },
  });
};
