import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { ApiFamily } from '../http/families.js';
import { fastSerializerCompiler } from '../http/fast-serializer.js';
import { errors, jsonObject } from '../lib/schemas.js';
import {
  connection,
  connectionList,
  connectionParams,
  createConnectionBody,
  keyQuery,
  listQuery,
  toConnection,
  toConnectionInput,
} from './schemas.js';
import type { ConnectionService } from './service.js';

/** Seed `001` connection routes; mounted at /connection and again at /v1/connections. */
export const connectionRoutes: FastifyPluginAsyncZod<{ connections: ConnectionService; family: ApiFamily }> = async (
  app,
  { connections: svc, family },
) => {
  const base = family.paths.connection;
  const tags = family.tags('Connections');
  const op = family.operationId;

  app.get(base, {
    schema: {
      operationId: op('listConnections'),
      tags,
      summary: 'List Connections',
      description:
        'Returns the connections of this environment, oldest first, optionally for one integration. Page with `limit` and `cursor` (`next_cursor` of the previous page).',
      querystring: listQuery,
      response: { 200: connectionList, ...errors(400, 401) },
    },
    handler: async (req) => {
      const q = req.query;
      const page = await svc.list(req.environment.id, {
        providerConfigKey: q.provider_config_key,
        connectionId: q.connection_id,
        endUserId: q.end_user_id,
        search: q.search,
        limit: q.limit,
        cursor: q.cursor,
      });
      return { connections: page.items.map(toConnection), next_cursor: page.nextCursor };
    },
  });

  app.post(base, {
    schema: {
      operationId: op('createConnection'),
      tags,
      summary: 'Create Connection',
      description:
        "Creates a connection from credentials you already hold (or updates the credentials of an existing one). Credentials are checked against the provider's auth mode and encrypted at rest.",
      body: createConnectionBody,
      response: { 200: connection, ...errors(400, 401, 503) },
    },
    handler: async (req) => {
      const { connection: c } = await svc.upsert(req.environment.id, toConnectionInput(req.body));
      return toConnection(c);
    },
  });

  app.get(`${base}/:connection_id`, {
    serializerCompiler: fastSerializerCompiler,
    schema: {
      operationId: op('getConnection'),
      tags,
      summary: 'Get Connection',
      description: 'Returns details of a specific connection including its authentication status and metadata.',
      params: connectionParams,
      querystring: keyQuery,
      response: { 200: connection, ...errors(400, 401, 404) },
    },
    handler: async (req) => toConnection(await svc.get(req.environment.id, req.query.provider_config_key, req.params.connection_id)),
  });

  app.delete(`${base}/:connection_id`, {
    schema: {
      operationId: op('deleteConnection'),
      tags,
      summary: 'Delete Connection',
      description: 'Deletes a connection and its stored credentials. The end user will need to re-authenticate to restore it.',
      params: connectionParams,
      querystring: keyQuery,
      response: { 204: z.undefined(), ...errors(400, 401, 404) },
    },
    handler: async (req, reply) => {
      await svc.delete(req.environment.id, req.query.provider_config_key, req.params.connection_id);
      return reply.code(204).send();
    },
  });

  for (const [method, mode] of [
    ['POST', 'replace'],
    ['PATCH', 'merge'],
  ] as const) {
    app.route({
      method,
      url: `${base}/:connection_id/metadata`,
      schema: {
        operationId: op(mode === 'replace' ? 'replaceConnectionMetadata' : 'updateConnectionMetadata'),
        tags,
        summary: mode === 'replace' ? 'Replace Connection Metadata' : 'Merge Connection Metadata',
        description:
          mode === 'replace'
            ? 'Replaces the whole metadata object of the connection.'
            : 'Merges the given top-level keys into the connection metadata (other keys are kept).',
        params: connectionParams,
        querystring: keyQuery,
        body: jsonObject,
        response: { 200: connection, ...errors(400, 401, 404) },
      },
      handler: async (req) => {
        const { provider_config_key: key } = req.query;
        await svc.writeMetadata(req.environment.id, key, [req.params.connection_id], req.body, mode);
        return toConnection(await svc.get(req.environment.id, key, req.params.connection_id));
      },
    });
  }
};
