import { randomBytes, randomUUID } from 'node:crypto';
import { and, desc, eq, inArray, lt, sql } from 'drizzle-orm';
import { type Db, queryRows } from '../db/client.js';
import { type DeliveryStatus, events, webhookDeliveries, webhookSettings } from '../db/schema/index.js';
import { openCursor, sealCursor } from '../lib/cursor.js';
import { NotFoundError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Vault } from '../lib/vault.js';
import type { Queues } from '../queue/queues.js';
import { signatureHeader } from './signing.js';

export type WebhookService = ReturnType<typeof createWebhookService>;

const secretContext = (environmentId: string) => `webhook-secret:${environmentId}`;
const newSecret = () => `whsec_${randomBytes(32).toString('base64url')}`;
const MAX_ERROR = 500;

export interface WebhookSettingsView {
  urls: string[];
  secretHint: string | null;
  previousSecretExpiresAt: Date | null;
  /** Only when a secret was just created or rotated. */
  secret?: string;
}

/**
 * Webhooks to the SaaS backend. Events are written to the `events` outbox by the code that makes
 * the change; `dispatch` turns each into one delivery per configured URL, and the webhook queue
 * sends them signed, with retries and exponential backoff, recording every attempt's answer.
 */
export function createWebhookService(deps: {
  db: Db;
  vault: Vault;
  queues: Queues;
  fetch: typeof fetch;
  log: Logger;
  maxAttempts: number;
  backoffMs: number;
}) {
  const { db, vault, queues, log } = deps;

  const jobOptions = (deliveryId: string) => ({
    jobId: deliveryId,
    attempts: deps.maxAttempts,
    backoff: { type: 'exponential' as const, delay: deps.backoffMs },
  });

  async function settingsRow(environmentId: string) {
    const [row] = await db.select().from(webhookSettings).where(eq(webhookSettings.environmentId, environmentId));
    return row;
  }

  const view = (row: typeof webhookSettings.$inferSelect | undefined, secret?: string): WebhookSettingsView => ({
    urls: row?.urls ?? [],
    secretHint: row?.secretHint ?? null,
    previousSecretExpiresAt: row?.previousSecretExpiresAt && row.previousSecretExpiresAt > new Date() ? row.previousSecretExpiresAt : null,
    ...(secret && { secret }),
  });

  return {
    async getSettings(environmentId: string): Promise<WebhookSettingsView> {
      return view(await settingsRow(environmentId));
    },

    /** Sets the URLs; the first call creates the signing secret and returns it (shown once). */
    async setUrls(environmentId: string, urls: string[]): Promise<WebhookSettingsView> {
      const secret = newSecret();
      const [row] = await db
        .insert(webhookSettings)
        .values({ environmentId, urls, secretEnc: vault.encrypt(secret, secretContext(environmentId)), secretHint: `${secret.slice(0, 10)}…` })
        .onConflictDoUpdate({ target: webhookSettings.environmentId, set: { urls, updatedAt: sql`now()` } })
        .returning({ inserted: sql<boolean>`(xmax = 0)` });
      return view(await settingsRow(environmentId), row?.inserted ? secret : undefined);
    },

    /** A new secret signs from now on; the old one also signs until the overlap ends. */
    async rotateSecret(environmentId: string, overlapSeconds: number): Promise<WebhookSettingsView> {
      const current = await settingsRow(environmentId);
      if (!current) throw new NotFoundError('No webhook settings yet: set the webhook URLs first (PUT /environment/webhooks)');
      const secret = newSecret();
      await db
        .update(webhookSettings)
        .set({
          secretEnc: vault.encrypt(secret, secretContext(environmentId)),
          secretHint: `${secret.slice(0, 10)}…`,
          previousSecretEnc: overlapSeconds > 0 ? current.secretEnc : null,
          previousSecretExpiresAt: overlapSeconds > 0 ? new Date(Date.now() + overlapSeconds * 1000) : null,
          updatedAt: sql`now()`,
        })
        .where(eq(webhookSettings.environmentId, environmentId));
      return view(await settingsRow(environmentId), secret);
    },

    async listDeliveries(environmentId: string, q: { status?: DeliveryStatus; limit: number; cursor?: string }) {
      const cursorScope = `deliveries:${environmentId}:${q.status ?? ''}`;
      const after = q.cursor ? openCursor(vault, cursorScope, q.cursor, ['string', 'string'] as const) : undefined;
      const rows = await db
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
        .limit(q.limit + 1);
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      return { deliveries: page, nextCursor: rows.length > q.limit && last ? sealCursor(vault, cursorScope, [last.createdAt.toISOString(), last.id]) : null };
    },

    /** Sends a delivery again (a failed one, or one the receiver lost). */
    async retryDelivery(environmentId: string, id: string): Promise<void> {
      const rows = await db
        .update(webhookDeliveries)
        .set({ status: 'pending', updatedAt: sql`now()` })
        .where(and(eq(webhookDeliveries.environmentId, environmentId), eq(webhookDeliveries.id, id)))
        .returning({ id: webhookDeliveries.id });
      if (!rows.length) throw new NotFoundError(`Webhook delivery "${id}" not found`);
      const old = await queues.queue('webhooks').getJob(id);
      if (old && (await old.isFailed())) await old.remove();
      await queues.add('webhooks', { deliveryId: id }, jobOptions(id));
    },

    /**
     * Turns undispatched events into deliveries (one per URL of their environment) and queues
     * them. Rows are locked with SKIP LOCKED, so several workers can dispatch at once.
     */
    async dispatch(limit = 500): Promise<number> {
      const created = await db.transaction(async (tx) => {
        const due = await queryRows<{ id: string; environment_id: string }>(
          tx,
          sql`SELECT id, environment_id FROM events WHERE delivered_at IS NULL ORDER BY id LIMIT ${limit} FOR UPDATE SKIP LOCKED`,
        );
        if (!due.length) return [];
        const envIds = [...new Set(due.map((e) => e.environment_id))];
        const settings = await tx.select({ environmentId: webhookSettings.environmentId, urls: webhookSettings.urls }).from(webhookSettings).where(inArray(webhookSettings.environmentId, envIds));
        const urlsOf = new Map(settings.map((s) => [s.environmentId, s.urls]));
        const deliveries = due.flatMap((e) => (urlsOf.get(e.environment_id) ?? []).map((url) => ({ id: randomUUID(), environmentId: e.environment_id, eventId: Number(e.id), url })));
        if (deliveries.length) await tx.insert(webhookDeliveries).values(deliveries).onConflictDoNothing();
        await tx.update(events).set({ deliveredAt: sql`now()` }).where(inArray(events.id, due.map((e) => Number(e.id))));
        return deliveries.map((d) => d.id);
      });
      for (const id of created) await queues.add('webhooks', { deliveryId: id }, jobOptions(id));
      return created.length;
    },

    /** Re-queues deliveries pending for `olderThanMs` (their job may have been lost with Redis; adding an existing job id is a no-op). */
    async requeuePending(olderThanMs: number): Promise<void> {
      const rows = await db
        .select({ id: webhookDeliveries.id })
        .from(webhookDeliveries)
        .where(and(eq(webhookDeliveries.status, 'pending'), lt(webhookDeliveries.updatedAt, new Date(Date.now() - olderThanMs))))
        .limit(1000);
      for (const r of rows) await queues.add('webhooks', { deliveryId: r.id }, jobOptions(r.id));
    },

    /** One attempt; throws when it failed and another attempt should follow. */
    async deliver(deliveryId: string, attempt: number, lastAttempt: boolean): Promise<void> {
      const [d] = await db
        .select({ delivery: webhookDeliveries, event: events })
        .from(webhookDeliveries)
        .innerJoin(events, eq(events.id, webhookDeliveries.eventId))
        .where(eq(webhookDeliveries.id, deliveryId));
      if (!d || d.delivery.status === 'delivered') return;
      const settings = await settingsRow(d.delivery.environmentId);
      if (!settings) return;
      const secrets = [vault.decrypt(settings.secretEnc, secretContext(settings.environmentId))];
      if (settings.previousSecretEnc && settings.previousSecretExpiresAt && settings.previousSecretExpiresAt > new Date()) {
        secrets.push(vault.decrypt(settings.previousSecretEnc, secretContext(settings.environmentId)));
      }
      const e = d.event;
      const body = JSON.stringify({
        type: e.type,
        operation: e.operation,
        success: e.success,
        connectionId: e.connectionId,
        providerConfigKey: e.providerConfigKey,
        ...e.payload,
        eventId: String(e.id),
        createdAt: e.createdAt.toISOString(),
      });
      const timestamp = Math.floor(Date.now() / 1000);
      let status: number | null = null;
      let error: string | null = null;
      try {
        const res = await deps.fetch(d.delivery.url, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'terapi-webhook-id': deliveryId,
            'terapi-event': e.type,
            'terapi-attempt': String(attempt),
            'terapi-signature': signatureHeader(secrets, body, timestamp),
          },
          body,
        });
        status = res.status;
        const text = await res.text().catch(() => '');
        if (res.status < 200 || res.status >= 300) error = `HTTP ${res.status}${text ? `: ${text.slice(0, 200)}` : ''}`;
      } catch (err) {
        error = err instanceof Error ? err.message : String(err);
      }
      const ok = error === null;
      await db
        .update(webhookDeliveries)
        .set({
          attempts: sql`${webhookDeliveries.attempts} + 1`,
          lastStatusCode: status,
          lastError: error?.slice(0, MAX_ERROR) ?? null,
          lastAttemptAt: sql`now()`,
          status: ok ? 'delivered' : lastAttempt ? 'failed' : 'pending',
          ...(ok && { deliveredAt: sql`now()` }),
          updatedAt: sql`now()`,
        })
        .where(eq(webhookDeliveries.id, deliveryId));
      if (!ok) {
        log.warn({ deliveryId, url: d.delivery.url, attempt, status }, 'webhook delivery failed');
        if (!lastAttempt) throw new Error(`webhook delivery failed: ${error}`);
      }
    },
  };
}
