import { and, eq, gt, lt, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { connectSessions } from '../db/schema/index.js';

export type ConnectSessionRow = typeof connectSessions.$inferSelect;
export type NewConnectSession = typeof connectSessions.$inferInsert;

export async function insertConnectSession(db: DbOrTx, values: NewConnectSession): Promise<ConnectSessionRow> {
  const [row] = await db.insert(connectSessions).values(values).returning();
  return row!;
}

/** A live (unexpired) session by the hash of its token. */
export async function findLiveSession(db: DbOrTx, tokenHash: string): Promise<ConnectSessionRow | undefined> {
  const [row] = await db
    .select()
    .from(connectSessions)
    .where(and(eq(connectSessions.tokenHash, tokenHash), gt(connectSessions.expiresAt, sql`now()`)));
  return row;
}

export async function deleteConnectSession(db: DbOrTx, id: string): Promise<void> {
  await db.delete(connectSessions).where(eq(connectSessions.id, id));
}

/** Housekeeping: sessions past their expiry serve no purpose. */
export async function deleteExpiredConnectSessions(db: DbOrTx): Promise<void> {
  await db.delete(connectSessions).where(lt(connectSessions.expiresAt, sql`now() - interval '1 day'`));
}

/** A session by id, expired or not (an OAuth callback may complete after its session ended). */
export async function findSessionById(db: DbOrTx, id: string): Promise<ConnectSessionRow | undefined> {
  const [row] = await db.select().from(connectSessions).where(eq(connectSessions.id, id));
  return row;
}
