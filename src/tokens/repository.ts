import { and, asc, eq, isNotNull, isNull, lt, or, sql } from 'drizzle-orm';
import type { DbOrTx } from '../db/client.js';
import { type ConnectionError, connections, integrations } from '../db/schema/index.js';

export interface RefreshState {
  credentialsEnc: string | null;
  credentialsExpiresAt: Date | null;
  lastRefreshedAt: Date | null;
  error: ConnectionError | null;
  refreshLockOwner: string | null;
  refreshLockUntil: Date | null;
  refreshRetryAt: Date | null;
  updatedAt: Date;
}

const stateColumns = {
  credentialsEnc: connections.credentialsEnc,
  credentialsExpiresAt: connections.credentialsExpiresAt,
  lastRefreshedAt: connections.lastRefreshedAt,
  error: connections.error,
  refreshLockOwner: connections.refreshLockOwner,
  refreshLockUntil: connections.refreshLockUntil,
  refreshRetryAt: connections.refreshRetryAt,
  updatedAt: connections.updatedAt,
};

export async function readRefreshState(db: DbOrTx, id: number): Promise<RefreshState | undefined> {
  const [row] = await db.select(stateColumns).from(connections).where(eq(connections.id, id));
  return row;
}

/**
 * Takes the refresh lease of a connection if nobody holds a live one: a single conditional UPDATE,
 * so exactly one process wins across the whole deployment. The lease expires by itself, so a
 * process that dies holding it blocks others for at most `leaseMs`.
 */
export async function acquireRefreshLease(db: DbOrTx, id: number, owner: string, leaseMs: number): Promise<RefreshState | undefined> {
  const [row] = await db
    .update(connections)
    .set({ refreshLockOwner: owner, refreshLockUntil: sql`now() + make_interval(secs => ${leaseMs / 1000})` })
    .where(and(eq(connections.id, id), or(isNull(connections.refreshLockUntil), lt(connections.refreshLockUntil, sql`now()`))))
    .returning(stateColumns);
  return row;
}

/** Stores refreshed credentials, clears any error and back-off, and releases the lease if still ours. */
export async function saveRefreshed(
  db: DbOrTx,
  id: number,
  owner: string,
  values: { credentialsEnc: string; credentialsExpiresAt: Date | null; refreshable: boolean; connectionConfig?: Record<string, unknown> },
): Promise<void> {
  await db
    .update(connections)
    .set({
      credentialsEnc: values.credentialsEnc,
      credentialsExpiresAt: values.credentialsExpiresAt,
      refreshable: values.refreshable,
      ...(values.connectionConfig && { connectionConfig: values.connectionConfig }),
      lastRefreshedAt: sql`now()`,
      updatedAt: sql`now()`,
      error: null,
      refreshRetryAt: null,
      refreshFailures: 0,
      ...releaseIfOwner(owner),
    })
    .where(eq(connections.id, id));
}

/**
 * Records a failed refresh: a dead grant or a configuration error sets `error`; a transient failure
 * sets a back-off time (and `clearError` drops an error it proves stale, e.g. a configuration error
 * once the request could be sent).
 */
export async function saveRefreshFailure(
  db: DbOrTx,
  id: number,
  owner: string,
  failure: { error?: ConnectionError; retryAt?: Date; clearError?: boolean },
): Promise<void> {
  await db
    .update(connections)
    .set({
      ...(failure.error ? { error: failure.error } : failure.clearError && { error: null }),
      refreshRetryAt: failure.retryAt ?? null,
      refreshFailures: sql`${connections.refreshFailures} + 1`,
      ...releaseIfOwner(owner),
    })
    .where(eq(connections.id, id));
}

export async function releaseLease(db: DbOrTx, id: number, owner: string): Promise<void> {
  await db
    .update(connections)
    .set({ refreshLockOwner: null, refreshLockUntil: null })
    .where(and(eq(connections.id, id), eq(connections.refreshLockOwner, owner)));
}

function releaseIfOwner(owner: string) {
  return {
    refreshLockOwner: sql`CASE WHEN ${connections.refreshLockOwner} = ${owner} THEN NULL ELSE ${connections.refreshLockOwner} END`,
    refreshLockUntil: sql`CASE WHEN ${connections.refreshLockOwner} = ${owner} THEN NULL ELSE ${connections.refreshLockUntil} END`,
  };
}

/**
 * OAuth connections the background refresher should renew now: tokens expiring within
 * `horizonSeconds`, and connections of providers whose refresh tokens die when idle (or rotate
 * without a stated expiry) that were not refreshed for the provider's `maxIdleSeconds`. Broken
 * connections and those backing off after a transient failure are skipped.
 */
export async function listDueForRefresh(
  db: DbOrTx,
  opts: { horizonSeconds: number; idlePolicies: { provider: string; maxIdleSeconds: number }[]; limit: number },
): Promise<{ id: number }[]> {
  const lastRenewed = sql`coalesce(${connections.lastRefreshedAt}, ${connections.createdAt})`;
  const idle = opts.idlePolicies.map(
    (p) => sql`(${integrations.provider} = ${p.provider} AND ${lastRenewed} < now() - make_interval(secs => ${p.maxIdleSeconds}))`,
  );
  const expiring = and(
    isNotNull(connections.credentialsExpiresAt),
    lt(connections.credentialsExpiresAt, sql`now() + make_interval(secs => ${opts.horizonSeconds})`),
  );
  return db
    .select({ id: connections.id })
    .from(connections)
    .innerJoin(integrations, eq(integrations.id, connections.integrationId))
    .where(
      and(
        eq(connections.refreshable, true),
        isNull(connections.error),
        or(isNull(connections.refreshRetryAt), lt(connections.refreshRetryAt, sql`now()`)),
        or(isNull(connections.refreshLockUntil), lt(connections.refreshLockUntil, sql`now()`)),
        or(expiring, ...idle),
      ),
    )
    .orderBy(asc(connections.credentialsExpiresAt))
    .limit(opts.limit);
}
