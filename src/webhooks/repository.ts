import { randomUUID } from 'node:crypto';
import { and, asc, desc, eq, inArray, lt, sql } from 'drizzle-orm';
import { type Db, type DbOrTx, queryRows } from '../db/client.js';
import { type DeliveryStatus, events, webhookDeliveries, webhookSettings } from '../db/schema/index.js';

export type WebhookSettingsRow = typeof webhookSettings.$inferSelect;
export type EventRow = typeof events.$inferSelect;
export type DeliveryRow = typeof webhookDeliveries.$inferSelect;

export async function findSettings(db: DbOrTx, environmentId: string): Promise<WebhookSettingsRow | undefined> {
  const [row] = await db.select().from(webhookSettings).where(eq(webhookSettings.environmentId, environmentId));
  return row;
}

/** Creates the settings with their first secret, or only replaces the URLs; `inserted` says which. */
export async function upsertUrls(
  db: DbOrTx,
  values: { environmentId: string; urls: string[]; secretEnc: string; secretHint: string },
): Promise<{ inserted: boolean }> {
  const [row] = await db
    .insert(webhookSettings)
    .values(values)
    .onConflictDoUpdate({ target: webhookSettings.environmentId, set: { urls: values.urls, updatedAt: sql`now()` } })
    .returning({ inserted: sql<boolean>`(xmax = 0)` });
  return { inserted: Boolean(row?.inserted) };
}

export async function updateSecret(
  db: DbOrTx,
  environmentId: string,
  values: { secretEnc: string; secretHint: string; previousSecretEnc: string | null; previousSecretExpiresAt: Date | null },
): Promise<void> {
  await db
    .update(webhookSettings)
    .set({ ...values, updatedAt: sql`now()` })
    .where(eq(webhookSettings.environmentId, environmentId));
}

/** One page of an environment's deliveries with their event, newest first, after a (created_at, id) position. */
export async function listDeliveries(
  db: DbOrTx,
  environmentId: string,
  q: { status?: DeliveryStatus; limit: number; after?: readonly [createdAt: string, id: string] },
) {
  const { after } = q;
  return db
    .select({
      id: webhookDeliveries.id,
      eventId: webhookDeliveries.eventId,
      url: webhookDeliveries.url,
      status: webhookDeliveries.status,
      attempts: webhookDeliveries.attempts,
      lastStatusCode: webhookDeliveries.lastStatusCode,
      lastError: webhookDeliveries.lastError,
      lastAttemptAt: webhookDeliveries.lastAttemptAt,
      deliveredAt: webhookDeliveries.deliveredAt,
      createdAt: webhookDeliveries.createdAt,
      type: events.type,
      operation: events.operation,
      connectionId: events.connectionId,
      providerConfigKey: events.providerConfigKey,
    })
    .from(webhookDeliveries)
    .innerJoin(events, eq(events.id, webhookDeliveries.eventId))
    .where(
      and(
        eq(webhookDeliveries.environmentId, environmentId),
        q.status ? eq(webhookDeliveries.status, q.status) : undefined,
        after ? sql`(${webhookDeliveries.createdAt}, ${webhookDeliveries.id}) < (${after[0]}::timestamptz, ${after[1]}::uuid)` : undefined,
      ),
    )
    .orderBy(desc(webhookDeliveries.createdAt), desc(webhookDeliveries.id))
    .limit(q.limit);
}

/** Marks a delivery pending again; false when the environment has no such delivery. */
export async function markPending(db: DbOrTx, environmentId: string, id: string): Promise<boolean> {
  const rows = await db
    .update(webhookDeliveries)
    .set({ status: 'pending', updatedAt: sql`now()` })
    .where(and(eq(webhookDeliveries.environmentId, environmentId), eq(webhookDeliveries.id, id)))
    .returning({ id: webhookDeliveries.id });
  return rows.length > 0;
}

/**
 * Turns up to `limit` undispatched events into deliveries (one per URL of their environment) and
 * marks the events dispatched, in one transaction; returns the new delivery ids. Rows are locked
 * with SKIP LOCKED, so several workers can dispatch at once.
 */
export async function createDeliveriesForDueEvents(db: Db, limit: number): Promise<string[]> {
  return db.transaction(async (tx) => {
    const due = await queryRows<{ id: string; environment_id: string }>(
      tx,
      sql`SELECT id, environment_id FROM events WHERE delivered_at IS NULL ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED`,
    );
    if (!due.length) return [];
    const envIds = [...new Set(due.map((e) => e.environment_id))];
    const settings = await tx
      .select({ environmentId: webhookSettings.environmentId, urls: webhookSettings.urls })
      .from(webhookSettings)
      .where(inArray(webhookSettings.environmentId, envIds));
    const urlsOf = new Map(settings.map((s) => [s.environmentId, s.urls]));
    const deliveries = due.flatMap((e) =>
      (urlsOf.get(e.environment_id) ?? []).map((url) => ({
        id: randomUUID(),
        environmentId: e.environment_id,
        eventId: Number(e.id),
        url,
      })),
    );
    if (deliveries.length) await tx.insert(webhookDeliveries).values(deliveries).onConflictDoNothing();
    await tx
      .update(events)
      .set({ deliveredAt: sql`now()` })
      .where(
        inArray(
          events.id,
          due.map((e) => Number(e.id)),
        ),
      );
    return deliveries.map((d) => d.id);
  });
}

/** The query of `listStalePending` (its plan is checked by a test). */
export const stalePendingQuery = (db: DbOrTx, before: Date) =>
  db
    .select({ id: webhookDeliveries.id })
    .from(webhookDeliveries)
    .where(and(eq(webhookDeliveries.status, 'pending'), lt(webhookDeliveries.updatedAt, before)))
    .orderBy(asc(webhookDeliveries.updatedAt))
    .limit(1000);

/**
 * Ids of deliveries still pending that were last touched before `before` (at most 1,000, oldest
 * first): a range scan of the partial index of pending deliveries, whatever the delivery log holds.
 */
export async function listStalePending(db: DbOrTx, before: Date): Promise<string[]> {
  const rows = await stalePendingQuery(db, before);
  return rows.map((r) => r.id);
}

/** A delivery with its event (any environment: the worker's lookup by id). */
export async function findDeliveryWithEvent(db: DbOrTx, id: string): Promise<{ delivery: DeliveryRow; event: EventRow } | undefined> {
  const [row] = await db
    .select({ delivery: webhookDeliveries, event: events })
    .from(webhookDeliveries)
    .innerJoin(events, eq(events.id, webhookDeliveries.eventId))
    .where(eq(webhookDeliveries.id, id));
  return row;
}

/** Records one attempt's outcome and counts it. */
export async function recordAttempt(
  db: DbOrTx,
  id: string,
  outcome: { statusCode: number | null; error: string | null; status: DeliveryStatus },
): Promise<void> {
  await db
    .update(webhookDeliveries)
    .set({
      attempts: sql`${webhookDeliveries.attempts} + 1`,
      lastStatusCode: outcome.statusCode,
      lastError: outcome.error,
      lastAttemptAt: sql`now()`,
      status: outcome.status,
      ...(outcome.status === 'delivered' && { deliveredAt: sql`now()` }),
      updatedAt: sql`now()`,
    })
    .where(eq(webhookDeliveries.id, id));
}
