import { randomBytes } from 'node:crypto';
import type { Db } from '../db/client.js';
import type { DeliveryStatus } from '../db/schema/index.js';
import { openCursor, positionCursors, sealCursor } from '../lib/cursor.js';
import type { EgressPolicy, HostLookup } from '../lib/egress.js';
import { NotFoundError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import type { Vault } from '../lib/vault.js';
import type { Queues } from '../queue/queues.js';
import * as repo from './repository.js';
import { signatureHeader } from './signing.js';
import { assertDeliverable } from './url-policy.js';

export type WebhookService = ReturnType<typeof createWebhookService>;

const secretContext = (environmentId: string) => `webhook-secret:${environmentId}`;
const newSecret = () => `whsec_${randomBytes(32).toString('base64url')}`;
const MAX_ERROR = 500;
/**
 * An event's id as receivers see it (`eventId` in the body, `event_id` in the delivery log): its
 * row id sealed for its environment, so the same event always shows the same id (every attempt and
 * resend, every URL) and the id reveals nothing of how many events the server holds.
 */
const eventIds = (vault: Vault, environmentId: string) => positionCursors(vault, `event:${environmentId}`);

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
  /** The policy `fetch` enforces: URLs it would refuse are refused when they are set. */
  egressPolicy: EgressPolicy;
  /** The egress client's DNS resolution, so a URL is judged as deliveries would be (tests answer without the network). */
  lookup?: HostLookup;
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

  const view = (row: repo.WebhookSettingsRow | undefined, secret?: string): WebhookSettingsView => ({
    urls: row?.urls ?? [],
    secretHint: row?.secretHint ?? null,
    previousSecretExpiresAt: row?.previousSecretExpiresAt && row.previousSecretExpiresAt > new Date() ? row.previousSecretExpiresAt : null,
    ...(secret && { secret }),
  });

  return {
    async getSettings(environmentId: string): Promise<WebhookSettingsView> {
      return view(await repo.findSettings(db, environmentId));
    },

    /** Sets the URLs; the first call creates the signing secret and returns it (shown once). */
    async setUrls(environmentId: string, urls: string[]): Promise<WebhookSettingsView> {
      await assertDeliverable(deps.egressPolicy, urls, deps.lookup);
      const secret = newSecret();
      const { inserted } = await repo.upsertUrls(db, {
        environmentId,
        urls,
        secretEnc: vault.encrypt(secret, secretContext(environmentId)),
        secretHint: `${secret.slice(0, 10)}…`,
      });
      return view(await repo.findSettings(db, environmentId), inserted ? secret : undefined);
    },

    /** A new secret signs from now on; the old one also signs until the overlap ends. */
    async rotateSecret(environmentId: string, overlapSeconds: number): Promise<WebhookSettingsView> {
      const current = await repo.findSettings(db, environmentId);
      if (!current) throw new NotFoundError('No webhook settings yet: set the webhook URLs first (PUT /environment/webhooks)');
      const secret = newSecret();
      await repo.updateSecret(db, environmentId, {
        secretEnc: vault.encrypt(secret, secretContext(environmentId)),
        secretHint: `${secret.slice(0, 10)}…`,
        previousSecretEnc: overlapSeconds > 0 ? current.secretEnc : null,
        previousSecretExpiresAt: overlapSeconds > 0 ? new Date(Date.now() + overlapSeconds * 1000) : null,
      });
      return view(await repo.findSettings(db, environmentId), secret);
    },

    async listDeliveries(environmentId: string, q: { status?: DeliveryStatus; limit: number; cursor?: string }) {
      const cursorScope = `deliveries:${environmentId}:${q.status ?? ''}`;
      const after = q.cursor ? openCursor(vault, cursorScope, q.cursor, ['string', 'string'] as const) : undefined;
      const rows = await repo.listDeliveries(db, environmentId, { status: q.status, limit: q.limit + 1, after });
      const page = rows.slice(0, q.limit);
      const last = page.at(-1);
      const ids = eventIds(vault, environmentId);
      return {
        deliveries: page.map((d) => ({ ...d, eventId: ids.seal(d.eventId) })),
        nextCursor: rows.length > q.limit && last ? sealCursor(vault, cursorScope, [last.createdAt.toISOString(), last.id]) : null,
      };
    },

    /** Sends a delivery again (a failed one, or one the receiver lost). */
    async retryDelivery(environmentId: string, id: string): Promise<void> {
      if (!(await repo.markPending(db, environmentId, id))) throw new NotFoundError(`Webhook delivery "${id}" not found`);
      const old = await queues.queue('webhooks').getJob(id);
      if (old && (await old.isFailed())) await old.remove();
      await queues.add('webhooks', { deliveryId: id }, jobOptions(id));
    },

    /**
     * Turns undispatched events into deliveries (one per URL of their environment) and queues
     * them. Rows are locked with SKIP LOCKED, so several workers can dispatch at once.
     */
    async dispatch(limit = 500): Promise<number> {
      const created = await repo.createDeliveriesForDueEvents(db, limit);
      for (const id of created) await queues.add('webhooks', { deliveryId: id }, jobOptions(id));
      return created.length;
    },

    /** Re-queues deliveries pending for `olderThanMs` (their job may have been lost with Redis; adding an existing job id is a no-op). */
    async requeuePending(olderThanMs: number): Promise<void> {
      for (const id of await repo.listStalePending(db, new Date(Date.now() - olderThanMs)))
        await queues.add('webhooks', { deliveryId: id }, jobOptions(id));
    },

    /**
     * One attempt; throws when it failed and another attempt of this job should follow. The
     * `Terapi-Attempt` header counts every attempt of the delivery, manual resends included.
     */
    async deliver(deliveryId: string, lastAttempt: boolean): Promise<void> {
      const d = await repo.findDeliveryWithEvent(db, deliveryId);
      if (!d || d.delivery.status === 'delivered') return;
      const settings = await repo.findSettings(db, d.delivery.environmentId);
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
        eventId: eventIds(vault, e.environmentId).seal(e.id),
        createdAt: e.createdAt.toISOString(),
      });
      const attempt = d.delivery.attempts + 1;
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
      await repo.recordAttempt(db, deliveryId, {
        statusCode: status,
        error: error?.slice(0, MAX_ERROR) ?? null,
        status: ok ? 'delivered' : lastAttempt ? 'failed' : 'pending',
      });
      if (!ok) {
        log.warn({ deliveryId, url: d.delivery.url, attempt, status }, 'webhook delivery failed');
        if (!lastAttempt) throw new Error(`webhook delivery failed: ${error}`);
      }
    },
  };
}
