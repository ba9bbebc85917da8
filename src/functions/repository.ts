import { and, asc, eq, sql } from 'drizzle-orm';
import { type DbOrTx, queryRows } from '../db/client.js';
import { connections, functionConfigs } from '../db/schema/index.js';

export type FunctionConfigRow = typeof functionConfigs.$inferSelect;

export async function listFunctionConfigs(db: DbOrTx, environmentId: string, integrationId: number): Promise<FunctionConfigRow[]> {
  return db
    .select()
    .from(functionConfigs)
    .where(and(eq(functionConfigs.environmentId, environmentId), eq(functionConfigs.integrationId, integrationId)))
    .orderBy(asc(functionConfigs.name));
}

export async function findFunctionConfig(
  db: DbOrTx,
  environmentId: string,
  integrationId: number,
  name: string,
): Promise<FunctionConfigRow | undefined> {
  const [row] = await db
    .select()
    .from(functionConfigs)
    .where(
      and(
        eq(functionConfigs.environmentId, environmentId),
        eq(functionConfigs.integrationId, integrationId),
        eq(functionConfigs.name, name),
      ),
    );
  return row;
}

export async function upsertFunctionConfig(
  db: DbOrTx,
  values: Pick<FunctionConfigRow, 'environmentId' | 'integrationId' | 'name' | 'type' | 'frequencySeconds' | 'autoStart'>,
): Promise<{ row: FunctionConfigRow; inserted: boolean }> {
  const [row] = await db
    .insert(functionConfigs)
    .values(values)
    .onConflictDoUpdate({
      target: [functionConfigs.integrationId, functionConfigs.name],
      set: { frequencySeconds: values.frequencySeconds, autoStart: values.autoStart, updatedAt: sql`now()` },
    })
    .returning({ ...functionConfigsColumns, inserted: sql<boolean>`(xmax = 0)` });
  const { inserted, ...rest } = row!;
  return { row: rest, inserted };
}

const functionConfigsColumns = {
  id: functionConfigs.id,
  environmentId: functionConfigs.environmentId,
  integrationId: functionConfigs.integrationId,
  name: functionConfigs.name,
  type: functionConfigs.type,
  frequencySeconds: functionConfigs.frequencySeconds,
  autoStart: functionConfigs.autoStart,
  createdAt: functionConfigs.createdAt,
  updatedAt: functionConfigs.updatedAt,
};

/** Disables a function; its syncs (schedules, checkpoints, runs) go with it. Returns whether it existed. */
export async function deleteFunctionConfig(db: DbOrTx, environmentId: string, integrationId: number, name: string): Promise<boolean> {
  const rows = await db
    .delete(functionConfigs)
    .where(
      and(
        eq(functionConfigs.environmentId, environmentId),
        eq(functionConfigs.integrationId, integrationId),
        eq(functionConfigs.name, name),
      ),
    )
    .returning({ id: functionConfigs.id });
  return rows.length > 0;
}

/**
 * Creates the per-connection sync rows of one enabled sync for every connection of its integration
 * (those that have none yet): due now when the sync auto-starts, paused otherwise.
 */
export async function createSyncsForConfig(db: DbOrTx, config: FunctionConfigRow): Promise<number[]> {
  const rows = await queryRows<{ id: number }>(
    db,
    sql`INSERT INTO syncs (environment_id, connection_pk, function_config_id, name, paused, next_run_at)
        SELECT c.environment_id, c.id, ${config.id}, ${config.name}, ${!config.autoStart}, CASE WHEN ${config.autoStart} THEN now() END
          FROM ${connections} c WHERE c.integration_id = ${config.integrationId}
        ON CONFLICT (connection_pk, name) DO NOTHING
        RETURNING id`,
  );
  return rows.map((r) => Number(r.id));
}

/**
 * New connections get every sync enabled on their integrations, in one statement however many
 * connections (a bulk import writes hundreds per transaction). Returns the ids of syncs due now.
 */
export async function createSyncsForConnections(db: DbOrTx, connectionPks: readonly number[]): Promise<number[]> {
  if (!connectionPks.length) return [];
  const rows = await queryRows<{ id: number; paused: boolean }>(
    db,
    sql`INSERT INTO syncs (environment_id, connection_pk, function_config_id, name, paused, next_run_at)
        SELECT f.environment_id, c.id, f.id, f.name, NOT f.auto_start, CASE WHEN f.auto_start THEN now() END
          FROM ${connections} c JOIN ${functionConfigs} f ON f.integration_id = c.integration_id AND f.type = 'sync'
         WHERE c.id = ANY(${sql.param(connectionPks.map(Number))}::bigint[])
        ON CONFLICT (connection_pk, name) DO NOTHING
        RETURNING id, paused`,
  );
  return rows.filter((r) => !r.paused).map((r) => Number(r.id));
}
