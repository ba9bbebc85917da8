import { and, eq, gt, lt, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { connectSessions, oauthSessions } from '../db/schema/index.js';

export type ConnectSessionRow = typeof connectSessions.$inferSelect;
export type NewConnectSession = typeof connectSessions.$inferInsert;
export type OAuthSessionRow = typeof oauthSessions.$inferSelect;

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

export async function insertOAuthSession(db: DbOrTx, values: typeof oauthSessions.$inferInsert): Promise<void> {
  await db.insert(oauthSessions).values(values);
}

/**
 * Consumes an OAuth session by the hash of its `state`: one UPDATE, so a replayed or concurrent
 * callback finds nothing. Expired sessions are never returned.
 */
export async function consumeOAuthSession(db: DbOrTx, stateHash: string): Promise<OAuthSessionRow | undefined> {
  const [row] = await db
    .update(oauthSessions)
    .set({ consumedAt: sql`now()` })
    .where(and(eq(oauthSessions.stateHash, stateHash), sql`${oauthSessions.consumedAt} IS NULL`, gt(oauthSessions.expiresAt, sql`now()`)))
    .returning();
  return row;
}

/** Housekeeping: sessions past their expiry serve no purpose. */
export async function deleteExpiredSessions(db: DbOrTx): Promise<void> {
  await db.delete(oauthSessions).where(lt(oauthSessions.expiresAt, sql`now() - interval '1 day'`));
  await db.delete(connectSessions).where(lt(connectSessions.expiresAt, sql`now() - interval '1 day'`));
}

export async function findLiveSessionById(db: DbOrTx, id: string): Promise<ConnectSessionRow | undefined> {
  const [row] = await db.select().from(connectSessions).where(eq(connectSessions.id, id));
  return row;
}
