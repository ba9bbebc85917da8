import { asc, eq, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { notifyChange } from '../db/notifications.js';
import { accounts, environments } from '../db/schema/index.js';

export interface EnvironmentRef {
  id: string;
  accountId: string;
  name: string;
  secretKeyHash: string;
}

const environmentColumns = {
  id: environments.id,
  accountId: environments.accountId,
  name: environments.name,
  secretKeyHint: environments.secretKeyHint,
  secretKeyRotatedAt: environments.secretKeyRotatedAt,
  createdAt: environments.createdAt,
  updatedAt: environments.updatedAt,
};
export type EnvironmentRow = { [K in keyof typeof environmentColumns]: (typeof environments.$inferSelect)[K] };

export async function findEnvironmentByKeyHash(db: DbOrTx, hash: string): Promise<EnvironmentRef | undefined> {
  const [row] = await db
    .select({ id: environments.id, accountId: environments.accountId, name: environments.name, secretKeyHash: environments.secretKeyHash })
    .from(environments)
    .where(eq(environments.secretKeyHash, hash))
    .limit(1);
  return row;
}

export async function insertAccount(db: DbOrTx, name: string) {
  const [row] = await db.insert(accounts).values({ name }).returning();
  return row!;
}

export async function listAccounts(db: DbOrTx) {
  return db.select().from(accounts).orderBy(asc(accounts.createdAt), asc(accounts.id));
}

export async function getAccount(db: DbOrTx, id: string) {
  const [row] = await db.select().from(accounts).where(eq(accounts.id, id));
  return row;
}

/** Deletes an account; returns the ids of the environments that went with it. */
export async function deleteAccount(db: DbOrTx, id: string): Promise<string[] | undefined> {
  const envs = await db.select({ id: environments.id }).from(environments).where(eq(environments.accountId, id));
  const deleted = await db.delete(accounts).where(eq(accounts.id, id)).returning({ id: accounts.id });
  return deleted.length ? envs.map((e) => e.id) : undefined;
}

export async function insertEnvironment(
  db: DbOrTx,
  values: { accountId: string; name: string; secretKeyHash: string; secretKeyHint: string },
): Promise<EnvironmentRow> {
  const [row] = await db.insert(environments).values(values).returning(environmentColumns);
  return row!;
}

export async function listEnvironments(db: DbOrTx, accountId?: string): Promise<EnvironmentRow[]> {
  return db
    .select(environmentColumns)
    .from(environments)
    .where(accountId ? eq(environments.accountId, accountId) : undefined)
    .orderBy(asc(environments.createdAt), asc(environments.id));
}

export async function getEnvironment(db: DbOrTx, id: string): Promise<EnvironmentRow | undefined> {
  const [row] = await db.select(environmentColumns).from(environments).where(eq(environments.id, id));
  return row;
}

export async function deleteEnvironment(db: DbOrTx, id: string): Promise<boolean> {
  const rows = await db.delete(environments).where(eq(environments.id, id)).returning({ id: environments.id });
  return rows.length > 0;
}

export async function setSecretKey(
  db: DbOrTx,
  id: string,
  secretKeyHash: string,
  secretKeyHint: string,
): Promise<EnvironmentRow | undefined> {
  const [row] = await db
    .update(environments)
    .set({ secretKeyHash, secretKeyHint, secretKeyRotatedAt: sql`now()`, updatedAt: sql`now()` })
    .where(eq(environments.id, id))
    .returning(environmentColumns);
  return row;
}

/** Tells every Terapi process (including this one) that cached facts about these environments are stale. */
export async function notifyEnvironmentsChanged(db: DbOrTx, ids: string[]): Promise<void> {
  // NOTIFY inside the transaction is delivered only on commit, so no process can re-cache the old state after it.
  for (const id of ids) await notifyChange(db, 'env', id);
}
