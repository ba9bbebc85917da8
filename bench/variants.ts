/**
 * Extra GET /connection/{id} routes, registered on the real Terapi app by bench/server.ts when
 * BENCH_VARIANTS=1. None of this is product code. All of them keep the real secret-key auth
 * (environmentAuth + an in-process key cache: no query for the key) and return the same body.
 *
 *   uncached               the real route's code path minus the per-process connection cache
 *                          (src/connections/reader.ts): src's findConnection (a drizzle prepared
 *                          statement) + toConnection + the zod schemas → one indexed query per request,
 *                          the path every cache miss (first read, after a write or TTL) takes
 *   unprepared             the same query built by drizzle on every request, as src did before it
 *                          prepared it (what building the SQL costs)
 *   uncached-narrow        a prepared statement selecting only the 8 columns the response needs
 *                          (src selects 25, including the credentials ciphertext and 5 jsonb columns)
 *   uncached-narrow-nozod  the same without the zod response schema (fastify's default JSON.stringify)
 *   raw-floor              no drizzle, no zod: the driver directly (pg named statement / PGlite query),
 *                          8 columns, a hand-written mapping; what HTTP + auth + driver + database cost
 *                          on this machine with no ORM or schema work — the floor for a query per request
 *
 * On the cache-hit path (what the real route does once a connection has been read):
 *
 *   cached                 control: a plain Map in front of src's findConnection + toConnection + the zod
 *                          schemas (should match the real route)
 *   cached-fjs             the same, but the response serialized by fast-json-stringify compiled from the
 *                          zod schema's JSON Schema (route-level serializerCompiler) instead of zod's
 *                          safeEncode + JSON.stringify; the OpenAPI document would not change
 *   cached-nozod           the same without a response schema (fastify's default JSON.stringify)
 */
import { and, eq, sql } from 'drizzle-orm';
import fastJson from 'fast-json-stringify';
import { z } from 'zod';
import type { SelectedFields } from 'drizzle-orm/pg-core';
import type { FastifyInstance } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import type pg from 'pg';
import type { PGlite } from '@electric-sql/pglite';
import { connectionColumns, findConnection } from '../src/connections/repository.js';
import { connection, connectionParams, keyQuery, toConnection } from '../src/connections/schemas.js';
import type { Database } from '../src/db/client.js';
import { connections, integrations } from '../src/db/schema/index.js';
import { createKeyCache } from '../src/environments/key-cache.js';
import { findEnvironmentByKeyHash } from '../src/environments/repository.js';
import { environmentAuth } from '../src/http/auth.js';
import { NotFoundError } from '../src/lib/errors.js';
import { errors } from '../src/lib/schemas.js';

export const variantNames = [
  'uncached',
  'unprepared',
  'uncached-narrow',
  'uncached-narrow-nozod',
  'raw-floor',
  'cached',
  'cached-fjs',
  'cached-nozod',
] as const;
export type VariantName = (typeof variantNames)[number];
export const variantPath = (name: VariantName) => `/bench-variants/${name}/connection`;

type ConnectionView = Parameters<typeof toConnection>[0];

/** Only what toConnection reads. */
const narrowColumns = {
  connectionId: connections.connectionId,
  credentialsType: connections.credentialsType,
  credentialsExpiresAt: connections.credentialsExpiresAt,
  metadata: connections.metadata,
  createdAt: connections.createdAt,
  updatedAt: connections.updatedAt,
  providerConfigKey: integrations.uniqueKey,
  provider: integrations.provider,
};

/** Every column, as src/connections/repository.ts selects them (for `unprepared`). */
const wideColumns = connectionColumns;

const RAW_SQL =
  'SELECT c.connection_id, c.credentials_type, c.credentials_expires_at, c.metadata, c.created_at, c.updated_at, i.unique_key, i.provider ' +
  'FROM connections c JOIN integrations i ON i.id = c.integration_id ' +
  'WHERE i.environment_id = $1 AND i.unique_key = $2 AND c.connection_id = $3 LIMIT 1';

export function registerVariants(app: FastifyInstance, database: Database, keyCacheTtlMs: number): void {
  const db = database.db;
  const select = (cols: SelectedFields, env: unknown, key: unknown, id: unknown) =>
    db
      .select(cols as typeof wideColumns) // typed as the wide selection; rows are cast where used
      .from(connections)
      .innerJoin(integrations, eq(integrations.id, connections.integrationId))
      .where(
        and(
          eq(integrations.environmentId, env as string),
          eq(integrations.uniqueKey, key as string),
          eq(connections.connectionId, id as string),
        ),
      )
      .limit(1);
  const narrow = select(narrowColumns, sql.placeholder('env'), sql.placeholder('key'), sql.placeholder('id')).prepare(
    'bench_find_connection_narrow',
  );
  const notFound = (key: string, id: string) => new NotFoundError(`Connection "${id}" not found for integration "${key}"`);

  // drizzle keeps the driver client on `$client` (not in our Db type).
  const client = (db as unknown as { $client: unknown }).$client;
  const rawQuery: (params: string[]) => Promise<Record<string, unknown>[]> =
    database.kind === 'postgres'
      ? async (values) => (await (client as pg.Pool).query({ name: 'bench_raw_find_connection', text: RAW_SQL, values })).rows
      : async (values) => (await (client as PGlite).query<Record<string, unknown>>(RAW_SQL, values)).rows;
  const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : new Date(String(v)).toISOString());

  const plugin: FastifyPluginAsyncZod = async (api) => {
    // Same auth as the real routes: Bearer secret key → in-process cache → no query per request.
    api.addHook('onRequest', environmentAuth(createKeyCache({ ttlMs: keyCacheTtlMs, load: (h) => findEnvironmentByKeyHash(db, h) })));

    const withSchema = {
      hide: true,
      params: connectionParams,
      querystring: keyQuery,
      response: { 200: connection, ...errors(400, 401, 404) },
    };
    const withoutResponseSchema = { hide: true, params: connectionParams, querystring: keyQuery };

    api.get(`${variantPath('uncached')}/:connection_id`, { schema: withSchema }, async (req) => {
      const row = await findConnection(db, req.environment.id, req.query.provider_config_key, req.params.connection_id);
      if (!row) throw notFound(req.query.provider_config_key, req.params.connection_id);
      return toConnection(row);
    });
    api.get(`${variantPath('unprepared')}/:connection_id`, { schema: withSchema }, async (req) => {
      const [row] = await select(wideColumns, req.environment.id, req.query.provider_config_key, req.params.connection_id);
      if (!row) throw notFound(req.query.provider_config_key, req.params.connection_id);
      return toConnection(row);
    });
    api.get(`${variantPath('uncached-narrow')}/:connection_id`, { schema: withSchema }, async (req) => {
      const [row] = await narrow.execute({ env: req.environment.id, key: req.query.provider_config_key, id: req.params.connection_id });
      if (!row) throw notFound(req.query.provider_config_key, req.params.connection_id);
      return toConnection(row);
    });
    api.get(`${variantPath('uncached-narrow-nozod')}/:connection_id`, { schema: withoutResponseSchema }, async (req) => {
      const [row] = await narrow.execute({ env: req.environment.id, key: req.query.provider_config_key, id: req.params.connection_id });
      if (!row) throw notFound(req.query.provider_config_key, req.params.connection_id);
      return toConnection(row);
    });
    api.get(`${variantPath('raw-floor')}/:connection_id`, { schema: { hide: true } }, async (req) => {
      const { connection_id: id } = req.params as { connection_id: string };
      const { provider_config_key: key } = req.query as { provider_config_key: string };
      const [row] = await rawQuery([req.environment.id, key, id]);
      if (!row) throw notFound(key, id);
      const expires = row.credentials_expires_at;
      return {
        id: row.connection_id,
        provider_config_key: row.unique_key,
        provider: row.provider,
        created_at: iso(row.created_at),
        updated_at: iso(row.updated_at),
        metadata: row.metadata,
        credentials: { type: String(row.credentials_type).toLowerCase(), ...(expires ? { expires_at: iso(expires) } : {}) },
      };
    });
  };
  void app.register(plugin);

  // Cache-hit variants: a Map with the same TTL as the real connection cache.
  const cache = new Map<string, { row: ConnectionView; at: number }>();
  const cachedGet = async (env: string, key: string, id: string) => {
    const k = `${env}\u0000${key}\u0000${id}`;
    const hit = cache.get(k);
    if (hit && Date.now() - hit.at < keyCacheTtlMs) return hit.row;
    const row = await findConnection(db, env, key, id);
    if (row) cache.set(k, { row, at: Date.now() });
    return row;
  };
  const jsonSchema = z.toJSONSchema(connection, { io: 'output', unrepresentable: 'any' }) as { $defs?: Record<string, object> };
  const stringifyConnection = fastJson((jsonSchema.$defs?.Connection ?? jsonSchema) as Parameters<typeof fastJson>[0]);

  const cachedPlugin: FastifyPluginAsyncZod = async (api) => {
    api.addHook('onRequest', environmentAuth(createKeyCache({ ttlMs: keyCacheTtlMs, load: (h) => findEnvironmentByKeyHash(db, h) })));
    const schema = { hide: true, params: connectionParams, querystring: keyQuery, response: { 200: connection, ...errors(400, 401, 404) } };
    const handler = async (req: {
      environment: { id: string };
      query: { provider_config_key: string };
      params: { connection_id: string };
    }) => {
      const row = await cachedGet(req.environment.id, req.query.provider_config_key, req.params.connection_id);
      if (!row) throw notFound(req.query.provider_config_key, req.params.connection_id);
      return toConnection(row);
    };
    api.get(`${variantPath('cached')}/:connection_id`, { schema }, handler);
    api.get(
      `${variantPath('cached-fjs')}/:connection_id`,
      {
        schema,
        // Only the 200 body goes through fast-json-stringify; error bodies keep zod's serializer.
        serializerCompiler: (route) =>
          route.httpStatus === '200' ? (data: unknown) => stringifyConnection(data) : (data: unknown) => JSON.stringify(data),
      },
      handler,
    );
    api.get(
      `${variantPath('cached-nozod')}/:connection_id`,
      { schema: { hide: true, params: connectionParams, querystring: keyQuery } },
      handler,
    );
  };
  void app.register(cachedPlugin);
}
