import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ApiFamily } from '../http/families.js';
import { errors, isoDate, providerConfigKey } from '../lib/schemas.js';
import { functionName } from './schemas.js';
import { formatFrequency } from './registry.js';
import type { FunctionService, FunctionView } from './service.js';

const fn = z
  .object({
    name: z.string(),
    type: z.enum(['sync', 'action']),
    description: z.string(),
    enabled: z.boolean(),
    sync_type: z.enum(['full', 'incremental']).nullable(),
    models: z.array(z.string()).describe('Models a sync writes (what `GET /records?model=` reads)'),
    frequency: z.string().nullable().describe('Sync frequency in force (`15m`, `1h`, `1d`)'),
    default_frequency: z.string().nullable(),
    auto_start: z.boolean().nullable(),
    scopes: z.array(z.string()),
    input_schema: z.unknown().nullable().describe("JSON Schema of an action's input"),
    enabled_at: z.iso.datetime().nullable(),
  })
  .meta({ id: 'Function' });

function toFunction(v: FunctionView): z.input<typeof fn> {
  const d = v.definition;
  const sync = d.type === 'sync';
  return {
    name: d.name,
    type: d.type,
    description: d.description,
    enabled: Boolean(v.config),
    sync_type: sync ? d.syncType : null,
    models: sync ? Object.keys(d.models as Record<string, unknown>) : [],
    frequency: sync && v.config?.frequencySeconds ? formatFrequency(v.config.frequencySeconds) : sync ? d.frequency : null,
    default_frequency: sync ? d.frequency : null,
    auto_start: sync ? (v.config?.autoStart ?? d.autoStart) : null,
    scopes: d.scopes ?? [],
    input_schema: d.type === 'action' ? z.toJSONSchema(d.input, { io: 'input', unrepresentable: 'any' }) : null,
    enabled_at: isoDate(v.config?.createdAt),
  };
}

const keyParams = z.object({ provider_config_key: providerConfigKey });

/** Which built-in functions an integration runs: `/integration/{key}/functions` (and under /v1). */
export const functionRoutes: FastifyPluginAsyncZod<{ functions: FunctionService; family: ApiFamily }> = async (
  app,
  { functions: svc, family },
) => {
  const base = `${family.paths.integration}/:provider_config_key/functions`;
  const tags = family.tags('Functions');
  const op = family.operationId;

  app.get(base, {
    schema: {
      operationId: op('listFunctions'),
      tags,
      summary: 'List Functions',
      description: "The built-in syncs and actions of the integration's provider, and which are enabled.",
      params: keyParams,
      response: { 200: z.object({ functions: z.array(fn) }), ...errors(400, 401, 404) },
    },
    handler: async (req) => ({ functions: (await svc.list(req.environment.id, req.params.provider_config_key)).map(toFunction) }),
  });

  app.post(base, {
    schema: {
      operationId: op('enableFunction'),
      tags,
      summary: 'Enable Function',
      description:
        'Enables a built-in function (or changes its frequency / auto-start). An auto-start sync is scheduled at once for every connection of the integration, and for each new one.',
      params: keyParams,
      body: z.object({
        name: functionName,
        frequency: z.string().max(50).optional().describe('Syncs: `15m`, `2h`, `1d`, `every 30 minutes` (1 minute to 31 days)'),
        auto_start: z.boolean().optional().describe("Syncs: schedule for every connection without a start call (default: the function's)"),
      }),
      response: { 200: fn, 201: fn, ...errors(400, 401, 404) },
    },
    handler: async (req, reply) => {
      const b = req.body;
      const { created, ...view } = await svc.enable(req.environment.id, req.params.provider_config_key, {
        name: b.name,
        frequency: b.frequency,
        autoStart: b.auto_start,
      });
      return reply.code(created ? 201 : 200).send(toFunction(view));
    },
  });

  app.delete(`${base}/:name`, {
    schema: {
      operationId: op('disableFunction'),
      tags,
      summary: 'Disable Function',
      description: "Disables a function: its schedules stop for every connection, and a sync's records are deleted.",
      params: keyParams.extend({ name: functionName }),
      response: { 204: z.undefined(), ...errors(400, 401, 404) },
    },
    handler: async (req, reply) => {
      await svc.disable(req.environment.id, req.params.provider_config_key, req.params.name);
      return reply.code(204).send();
    },
  });
};
