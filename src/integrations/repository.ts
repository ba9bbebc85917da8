import { and, asc, eq, getTableColumns, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { connections, integrations } from '../db/schema/index.js';

export type IntegrationRow = typeof integrations.$inferSelect;
export type IntegrationWithCount = IntegrationRow & { connectionCount: number };
export type NewIntegration = typeof integrations.$inferInsert;

// Qualified by hand: inside a subquery drizzle renders bare column names, and "id" would bind to connections.
const connectionCount = sql<number>`(SELECT count(*) FROM ${connections} c WHERE c.integration_id = "integrations"."id")::int`;

export async function insertIntegration(db: DbOrTx, values: NewIntegration): Promise<IntegrationRow> {
  const [row] = await db.insert(integrations).values(values).returning();
  return row!;
}

/** The integrations of an environment with how many connections each has (the listing shows it). */
export async function listIntegrations(db: DbOrTx, environmentId: string): Promise<IntegrationWithCount[]> {
  return db
    .select({ ...getTableColumns(integrations), connectionCount })
    .from(integrations)
    .where(eq(integrations.environmentId, environmentId))
    .orderBy(asc(integrations.createdAt), asc(integrations.id));
}

/** The same without counting connections: what other domains read (the Connect page, flows). */
export async function listIntegrationRows(db: DbOrTx, environmentId: string): Promise<IntegrationRow[]> {
  return db
    .select()
    .from(integrations)
    .where(eq(integrations.environmentId, environmentId))
    .orderBy(asc(integrations.createdAt), asc(integrations.id));
}

/**
 * One integration by key, without its connection count: every connection write, token refresh and
 * OAuth callback reads it, and counting an integration's connections costs a scan of them.
 */
export async function findIntegration(db: DbOrTx, environmentId: string, uniqueKey: string): Promise<IntegrationRow | undefined> {
  const [row] = await db
    .select()
    .from(integrations)
    .where(and(eq(integrations.environmentId, environmentId), eq(integrations.uniqueKey, uniqueKey)));
  return row;
}

/** One integration with its connection count, for the views that show it. */
export async function findIntegrationWithCount(
  db: DbOrTx,
  environmentId: string,
  uniqueKey: string,
): Promise<IntegrationWithCount | undefined> {
  const [row] = await db
    .select({ ...getTableColumns(integrations), connectionCount })
    .from(integrations)
    .where(and(eq(integrations.environmentId, environmentId), eq(integrations.uniqueKey, uniqueKey)));
  return row;
}

export async function findIntegrationById(db: DbOrTx, environmentId: string, id: number): Promise<IntegrationRow | undefined> {
  const [row] = await db
    .select()
    .from(integrations)
    .where(and(eq(integrations.environmentId, environmentId), eq(integrations.id, id)));
  return row;
}

export async function updateIntegration(
  db: DbOrTx,
  environmentId: string,
  uniqueKey: string,
  values: Partial<NewIntegration>,
): Promise<IntegrationRow | undefined> {
  const [row] = await db
    .update(integrations)
    .set({ ...values, updatedAt: sql`now()` })
    .where(and(eq(integrations.environmentId, environmentId), eq(integrations.uniqueKey, uniqueKey)))
    .returning();
  return row;
}

/** Deletes the integration; its connections go with it in the same statement (ON DELETE CASCADE). */
export async function deleteIntegration(db: DbOrTx, environmentId: string, uniqueKey: string): Promise<number | undefined> {
  const rows = await db
    .delete(integrations)
    .where(and(eq(integrations.environmentId, environmentId), eq(integrations.uniqueKey, uniqueKey)))
    .returning({ id: integrations.id });
  return rows[0]?.id;
}

export async function listInstalledProviders(db: DbOrTx, environmentId: string): Promise<string[]> {
  const rows = await db
    .selectDistinct({ provider: integrations.provider })
    .from(integrations)
    .where(eq(integrations.environmentId, environmentId));
  return rows.map((r) => r.provider);
}
