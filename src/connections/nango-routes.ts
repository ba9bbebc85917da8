import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { ValidationError } from '../lib/errors.js';
import {
  booleanQuery,
  connectionIdSchema,
  cursorQuery,
  errors,
  isoDate,
  jsonObject,
  limitQuery,
  providerConfigKey,
} from '../lib/schemas.js';
import type { StoredCredentials } from './credentials.js';
import { connectionParams, keyQuery, nangoImportBody, toConnectionInput } from './schemas.js';
import type { TokenService } from '../tokens/service.js';
import type { ConnectionService, ConnectionView } from './service.js';

const tags = ['Nango-compatible'];

const connectionErrors = z.array(z.object({ type: z.string(), code: z.string(), message: z.string(), at: z.string() }));
const endUser = z
  .object({ id: z.string(), email: z.string().optional(), display_name: z.string().optional(), organization: z.unknown().optional() })
  .nullable();

const publicId = z
  .int()
  .describe("A number for the connection, stable for its life (Nango's is numeric); random, it tells nothing about other connections");

const listItem = z
  .object({
    id: publicId,
    connection_id: z.string(),
    provider: z.string(),
    provider_config_key: z.string(),
    created: z.iso.datetime(),
    metadata: z.record(z.string(), z.unknown()),
    tags: z.record(z.string(), z.string()),
    errors: connectionErrors,
    end_user: endUser,
  })
  .meta({ id: 'NangoConnectionListItem' });

const nangoConnection = z
  .object({
    id: publicId,
    connection_id: z.string(),
    provider_config_key: z.string(),
    provider: z.string(),
    errors: connectionErrors,
    end_user: endUser,
    metadata: z.record(z.string(), z.unknown()),
    connection_config: z.record(z.string(), z.unknown()),
    tags: z.record(z.string(), z.string()),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
    last_fetched_at: z.iso.datetime().nullable(),
    credentials: z
      .record(z.string(), z.unknown())
      .describe('The credentials object (GET only; other responses carry only type and expiry)'),
  })
  .meta({ id: 'NangoConnection' });

function base(c: ConnectionView) {
  return {
    id: c.publicId,
    connection_id: c.connectionId,
    provider_config_key: c.providerConfigKey,
    provider: c.provider,
    errors: c.error ? [c.error] : [],
    end_user: c.endUser ?? null,
    metadata: c.metadata,
    tags: c.tags,
  };
}

function toListItem(c: ConnectionView): z.output<typeof listItem> {
  const { provider_config_key, ...rest } = base(c);
  return { ...rest, provider_config_key, created: isoDate(c.createdAt)! };
}

function toNango(c: ConnectionView, credentials: Record<string, unknown>): z.output<typeof nangoConnection> {
  return {
    ...base(c),
    connection_config: c.connectionConfig,
    created_at: isoDate(c.createdAt)!,
    updated_at: isoDate(c.updatedAt)!,
    last_fetched_at: isoDate(c.lastFetchedAt),
    credentials,
  };
}

/** Credentials the way Nango's connection GET returns them (its clients read their token here). */
function nangoCredentials(c: StoredCredentials, withRefreshToken: boolean): Record<string, unknown> {
  switch (c.type) {
    case 'OAUTH2': {
      // The raw token response carries the refresh token too; it leaves only when asked for.
      const { refresh_token: _omitted, ...rawWithoutRefresh } = c.raw;
      return {
        type: 'OAUTH2',
        access_token: c.access_token,
        ...(withRefreshToken && c.refresh_token && { refresh_token: c.refresh_token }),
        ...(c.expires_at && { expires_at: c.expires_at }),
        raw: withRefreshToken ? c.raw : rawWithoutRefresh,
      };
    }
    case 'OAUTH2_CC':
      return {
        type: 'OAUTH2_CC',
        token: c.access_token ?? null,
        expires_at: c.expires_at ?? null,
        client_id: c.client_id ?? null,
        raw: c.raw,
      };
    case 'API_KEY':
      return { type: 'API_KEY', apiKey: c.api_key };
    case 'BASIC':
      return { type: 'BASIC', username: c.username, password: c.password };
  }
}

const credentialState = (c: ConnectionView) => ({
  type: c.credentialsType,
  ...(c.credentialsExpiresAt && { expires_at: c.credentialsExpiresAt.toISOString() }),
});

/** Nango's `/connections` and `/connection/metadata` API. */
export const nangoConnectionRoutes: FastifyPluginAsyncZod<{ connections: ConnectionService; tokens: TokenService }> = async (
  app,
  { connections: svc, tokens },
) => {
  app.get('/connections', {
    schema: {
      operationId: 'nangoListConnections',
      tags,
      summary: 'List connections (Nango-compatible)',
      querystring: z.object({
        connectionId: connectionIdSchema.optional(),
        integrationId: providerConfigKey.optional(),
        endUserId: z.string().min(1).max(255).optional(),
        search: z.string().min(1).max(255).optional(),
        limit: limitQuery(1000, 100),
        cursor: cursorQuery,
      }),
      response: { 200: z.object({ connections: z.array(listItem), next_cursor: z.string().nullable() }), ...errors(400, 401) },
    },
    // Nango's SDK filters by `tags[<name>]=…`; without tag filtering here, answering every connection would be wrong.
    preValidation: async (req) => {
      const tagFilter = Object.keys(req.query as object).find((k) => k.startsWith('tags['));
      if (tagFilter)
        throw ValidationError.field(tagFilter, 'filtering connections by tag is not supported; filter by endUserId or integrationId');
    },
    handler: async (req) => {
      const q = req.query;
      const page = await svc.list(req.environment.id, {
        providerConfigKey: q.integrationId,
        connectionId: q.connectionId,
        endUserId: q.endUserId,
        search: q.search,
        limit: q.limit,
        cursor: q.cursor,
      });
      return { connections: page.items.map(toListItem), next_cursor: page.nextCursor };
    },
  });

  app.get('/connections/:connection_id', {
    schema: {
      operationId: 'nangoGetConnection',
      tags,
      summary: 'Get a connection with its credentials (Nango-compatible)',
      description:
        'Returns the connection and its credentials, as Nango does. The token is refreshed first when it expires soon (or with `force_refresh=true`). The refresh token is included only with `refresh_token=true`.',
      params: connectionParams,
      querystring: keyQuery.extend({
        force_refresh: booleanQuery.optional().describe('Refresh the OAuth token first, even if it is still valid'),
        refresh_token: booleanQuery.optional().describe('Include the refresh token in the response'),
      }),
      response: { 200: nangoConnection, ...errors(400, 401, 404, 424, 503) },
    },
    handler: async (req) => {
      const { connection, credentials } = await tokens.getToken(
        req.environment.id,
        req.query.provider_config_key,
        req.params.connection_id,
        {
          force: req.query.force_refresh ?? false,
        },
      );
      return toNango(svc.markFetched(connection), nangoCredentials(credentials, req.query.refresh_token ?? false));
    },
  });

  app.post('/connections', {
    schema: {
      operationId: 'nangoUpsertConnection',
      tags,
      summary: 'Import a connection (Nango-compatible)',
      description: 'Creates or updates a connection from credentials you already hold. A connection_id is generated when omitted.',
      body: nangoImportBody,
      response: { 200: nangoConnection, 201: nangoConnection, ...errors(400, 401, 503) },
    },
    handler: async (req, reply) => {
      const { connection, created } = await svc.upsert(req.environment.id, toConnectionInput(req.body));
      return reply.code(created ? 201 : 200).send(toNango(connection, credentialState(connection)));
    },
  });

  app.delete('/connections/:connection_id', {
    schema: {
      operationId: 'nangoDeleteConnection',
      tags,
      summary: 'Delete a connection (Nango-compatible)',
      params: connectionParams,
      querystring: keyQuery,
      response: { 200: z.object({ success: z.literal(true) }), ...errors(400, 401, 404) },
    },
    handler: async (req) => {
      await svc.delete(req.environment.id, req.query.provider_config_key, req.params.connection_id);
      return { success: true as const };
    },
  });

  // Nango's API documents `/connection/metadata`; its Node SDK calls `/connections/metadata`. Both are served.
  for (const [method, mode, url, operationId] of [
    ['POST', 'replace', '/connection/metadata', 'nangoSetMetadata'],
    ['PATCH', 'merge', '/connection/metadata', 'nangoUpdateMetadata'],
    ['POST', 'replace', '/connections/metadata', 'nangoSetConnectionsMetadata'],
    ['PATCH', 'merge', '/connections/metadata', 'nangoUpdateConnectionsMetadata'],
  ] as const) {
    app.route({
      method,
      url,
      schema: {
        operationId,
        tags,
        summary: mode === 'replace' ? 'Set connection metadata (Nango-compatible)' : 'Merge connection metadata (Nango-compatible)',
        description: 'Applies to one connection or a list of them, all or nothing.',
        body: z.object({
          connection_id: z.union([connectionIdSchema, z.array(connectionIdSchema).min(1).max(1000)]),
          provider_config_key: providerConfigKey,
          metadata: jsonObject,
        }),
        response: {
          200: z.object({
            connection_id: z.union([z.string(), z.array(z.string())]),
            provider_config_key: z.string(),
            metadata: z.record(z.string(), z.unknown()),
          }),
          ...errors(400, 401, 404),
        },
      },
      handler: async (req) => {
        const b = req.body;
        const ids = Array.isArray(b.connection_id) ? b.connection_id : [b.connection_id];
        await svc.writeMetadata(req.environment.id, b.provider_config_key, ids, b.metadata, mode);
        return { connection_id: b.connection_id, provider_config_key: b.provider_config_key, metadata: b.metadata };
      },
    });
  }
};
