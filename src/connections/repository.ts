import { and, asc, eq, getTableColumns, gt, ilike, inArray, sql, type SQL } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../db/client.js';
import { connections, integrations } from '../db/schema/index.js';

export type ConnectionRow = typeof connections.$inferSelect;
/** A connection with the integration facts every response needs. */
export type ConnectionWithIntegration = ConnectionRow & { providerConfigKey: string; provider: string };

/** Every connection column plus the integration facts responses need (one join, no second query). */
export const connectionColumns = {
  ...getTableColumns(connections),
  providerConfigKey: integrations.uniqueKey,
  provider: integrations.provider,
};
const columns = connectionColumns;

const findConnectionQuery = (db: DbOrTx) =>
  db
    .select(columns)
    .from(connections)
    .innerJoin(integrations, eq(integrations.id, connections.integrationId))
    .where(
      and(
        eq(integrations.environmentId, sql.placeholder('environmentId')),
        eq(integrations.uniqueKey, sql.placeholder('providerConfigKey')),
        eq(connections.connectionId, sql.placeholder('connectionId')),
      ),
    )
    .limit(1);

// The hottest query (token and connection reads): built once per database and prepared on the
// server, so a request pays neither query building nor planning.
const prepared = new WeakMap<object, ReturnType<ReturnType<typeof findConnectionQuery>['prepare']>>();

/** One indexed lookup: (environment, integration key) → (integration, connection id). */
export async function findConnection(
  db: DbOrTx,
  environmentId: string,
  providerConfigKey: string,
  connectionId: string,
): Promise<ConnectionWithIntegration | undefined> {
  let statement = prepared.get(db);
  if (!statement) {
    statement = findConnectionQuery(db).prepare('terapi_find_connection');
    prepared.set(db, statement);
  }
  const [row] = await statement.execute({ environmentId, providerConfigKey, connectionId });
  return row;
}

/** Connections by internal id, for background work that is not scoped by a request's tenant. */
export async function findConnectionsById(db: DbOrTx, ids: number[]): Promise<ConnectionWithIntegration[]> {
  if (!ids.length) return [];
  return db
    .select(columns)
    .from(connections)
    .innerJoin(integrations, eq(integrations.id, connections.integrationId))
    .where(inArray(connections.id, ids));
}

export interface ConnectionFilter {
  providerConfigKey?: string;
  connectionId?: string;
  endUserId?: string;
  search?: string;
  afterId?: number;
  limit: number;
}

/** Keyset page ordered by internal id (creation order), so pages never skip or repeat. */
export async function listConnections(db: DbOrTx, environmentId: string, f: ConnectionFilter): Promise<ConnectionWithIntegration[]> {
  const conditions: (SQL | undefined)[] = [eq(connections.environmentId, environmentId)];
  if (f.providerConfigKey !== undefined) conditions.push(eq(integrations.uniqueKey, f.providerConfigKey));
  if (f.connectionId !== undefined) conditions.push(eq(connections.connectionId, f.connectionId));
  if (f.endUserId !== undefined) conditions.push(eq(connections.endUserId, f.endUserId));
  if (f.search) conditions.push(ilike(connections.connectionId, `%${f.search.replace(/[\\%_]/g, (c) => `\\${c}`)}%`));
  if (f.afterId !== undefined) conditions.push(gt(connections.id, f.afterId));
  return db
    .select(columns)
    .from(connections)
    .innerJoin(integrations, eq(integrations.id, connections.integrationId))
    .where(and(...conditions))
    .orderBy(asc(connections.id))
    .limit(f.limit);
}

export type ConnectionUpsert = Pick<typeof connections.$inferInsert, 'environmentId' | 'integrationId' | 'connectionId'> &
  Partial<
    Pick<
      typeof connections.$inferInsert,
      | 'credentialsType'
      | 'credentialsEnc'
      | 'credentialsExpiresAt'
      | 'refreshable'
      | 'connectionConfig'
      | 'metadata'
      | 'tags'
      | 'endUser'
      | 'endUserId'
    >
  >;

const writable = [
  'credentialsType',
  'credentialsEnc',
  'credentialsExpiresAt',
  'refreshable',
  'connectionConfig',
  'metadata',
  'tags',
  'endUser',
  'endUserId',
] as const;

export type ConnectionWrite = ConnectionUpsert & { credentialsType: ConnectionRow['credentialsType'] };

const tableColumns = Object.entries(getTableColumns(connections));
const keyed = ['environmentId', 'integrationId', 'connectionId'] as const;

/** A value as the text of a Postgres literal (every column travels as `text[]` and is cast in SQL). */
function asText(value: string | number | boolean | Date | object | null | undefined): string | null {
  if (value === null || value === undefined) return null;
  if (value instanceof Date) return value.toISOString();
  if (typeof value === 'object') return JSON.stringify(value);
  return typeof value === 'string' ? value : `${value}`;
}

/** A row of `RETURNING *` in the shape drizzle's own queries give (column keys, driver values mapped). */
function fromDriver(raw: Record<string, unknown>): ConnectionRow {
  const row: Record<string, unknown> = {};
  for (const [key, column] of tableColumns) {
    const value = raw[column.name];
    row[key] = value === null || value === undefined ? null : column.mapFromDriverValue(value);
  }
  return row as ConnectionRow;
}

/**
 * Inserts or updates connections by (integration, connection id); a field left undefined keeps its
 * stored value. Rows that define the same fields share one statement whose values travel as one
 * array per column (`unnest`), so a batch of hundreds costs one round trip and no per-value query
 * building. The (integration, connection id) pairs must be distinct: one statement cannot update a
 * row twice. Returns every row as stored, with whether it was inserted (in no particular order).
 */
export async function upsertConnections(db: DbOrTx, rows: readonly ConnectionWrite[]): Promise<(ConnectionRow & { inserted: boolean })[]> {
  const shapes = new Map<string, ConnectionWrite[]>();
  for (const row of rows) {
    const shape = writable.filter((k) => row[k] !== undefined).join(',');
    const group = shapes.get(shape);
    if (group) group.push(row);
    else shapes.set(shape, [row]);
  }
  const out: (ConnectionRow & { inserted: boolean })[] = [];
  for (const [shape, group] of shapes) {
    const fields = shape.split(',') as (typeof writable)[number][];
    const all = [...keyed, ...fields];
    const names = all.map((f) => sql.identifier(connections[f].name));
    const arrays = all.map((f) => sql`${sql.param(group.map((r) => asText(r[f])))}::text[]`);
    const casts = all.map((f, i) => sql`${sql.identifier(`c${i}`)}::${sql.raw(connections[f].getSQLType())}`);
    const set = [
      sql`updated_at = now()`,
      ...fields.map((f) => sql`${sql.identifier(connections[f].name)} = excluded.${sql.identifier(connections[f].name)}`),
      // New credentials clear a previous auth error: the connection works again.
      ...(fields.includes('credentialsEnc') ? [sql`error = NULL`] : []),
    ];
    const result = await queryRows<Record<string, unknown>>(
      db,
      sql`INSERT INTO ${connections} (${sql.join(names, sql`, `)})
          SELECT ${sql.join(casts, sql`, `)} FROM unnest(${sql.join(arrays, sql`, `)}) AS u(${sql.join(
            all.map((_, i) => sql.identifier(`c${i}`)),
            sql`, `,
          )})
          ON CONFLICT (integration_id, connection_id) DO UPDATE SET ${sql.join(set, sql`, `)}
          RETURNING *, (xmax = 0) AS terapi_inserted`,
    );
    for (const raw of result) out.push({ ...fromDriver(raw), inserted: raw.terapi_inserted === true });
  }
  return out;
}

/** The existing connections among (integration, connection id) pairs of one environment, in one query. */
export async function findConnectionsByKeys(
  db: DbOrTx,
  environmentId: string,
  keys: readonly { integrationId: number; connectionId: string }[],
): Promise<ConnectionRow[]> {
  if (!keys.length) return [];
  return db
    .select()
    .from(connections)
    .where(
      and(
        eq(connections.environmentId, environmentId),
        sql`(${connections.integrationId}, ${connections.connectionId}) IN (SELECT * FROM unnest(${sql.param(keys.map((k) => k.integrationId))}::bigint[], ${sql.param(keys.map((k) => k.connectionId))}::text[]))`,
      ),
    );
}

/** Deletes one connection; returns what revoking its grant afterwards needs. */
export async function deleteConnection(
  db: DbOrTx,
  environmentId: string,
  integrationId: number,
  connectionId: string,
): Promise<Pick<ConnectionRow, 'id' | 'credentialsEnc' | 'connectionConfig'> | undefined> {
  const rows = await db
    .delete(connections)
    .where(
      and(
        eq(connections.environmentId, environmentId),
        eq(connections.integrationId, integrationId),
        eq(connections.connectionId, connectionId),
      ),
    )
    .returning({ id: connections.id, credentialsEnc: connections.credentialsEnc, connectionConfig: connections.connectionConfig });
  return rows[0];
}

/**
 * Replaces or merges (top-level keys) the metadata of several connections of one integration;
 * rows whose result would exceed `limitBytes` are not changed. Returns the ids that were updated.
 */
export async function writeMetadata(
  db: DbOrTx,
  environmentId: string,
  integrationId: number,
  connectionIds: string[],
  metadata: Record<string, unknown>,
  mode: 'replace' | 'merge',
  limitBytes: number,
): Promise<{ id: number; connectionId: string; metadata: Record<string, unknown> }[]> {
  const next =
    mode === 'merge' ? sql`${connections.metadata} || ${JSON.stringify(metadata)}::jsonb` : sql`${JSON.stringify(metadata)}::jsonb`;
  return db
    .update(connections)
    .set({ metadata: next, updatedAt: sql`now()` })
    .where(
      and(
        eq(connections.environmentId, environmentId),
        eq(connections.integrationId, integrationId),
        inArray(connections.connectionId, connectionIds),
        sql`octet_length((${next})::text) <= ${limitBytes}`,
      ),
    )
    .returning({ id: connections.id, connectionId: connections.connectionId, metadata: connections.metadata });
}

/** Stamps `last_fetched_at` of several connections in one statement; a stamp never moves back. */
export async function stampLastFetched(db: DbOrTx, stamps: readonly { id: number; at: Date }[]): Promise<void> {
  if (!stamps.length) return;
  const ids = stamps.map((s) => s.id);
  const ats = stamps.map((s) => s.at.toISOString());
  await db.execute(sql`
    UPDATE connections c SET last_fetched_at = GREATEST(c.last_fetched_at, v.at)
      FROM (SELECT unnest(${sql.param(ids)}::bigint[]) AS id, unnest(${sql.param(ats)}::timestamptz[]) AS at) v
     WHERE c.id = v.id`);
}
