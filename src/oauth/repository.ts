import { and, eq, gt, lt, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { oauthSessions } from '../db/schema/index.js';

export type OAuthSessionRow = typeof oauthSessions.$inferSelect;

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

/** Housekeeping: OAuth attempts past their expiry serve no purpose. */
export async function deleteExpiredOAuthSessions(db: DbOrTx): Promise<void> {
  await db.delete(oauthSessions).where(lt(oauthSessions.expiresAt, sql`now() - interval '1 day'`));
}
