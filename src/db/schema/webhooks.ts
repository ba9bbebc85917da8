import { sql } from 'drizzle-orm';
import { bigint, integer, jsonb, pgTable, text, timestamp, uuid, index, uniqueIndex } from 'drizzle-orm/pg-core';
import { environmentRef, environments, timestamps } from './environments.js';
import { events } from './events.js';

/**
 * Where an environment's events go. The signing secret is encrypted; during a rotation the
 * previous secret keeps signing too (a second `v1=` signature) until `previous_secret_expires_at`.
 */
export const webhookSettings = pgTable('webhook_settings', {
  environmentId: uuid('environment_id')
    .primaryKey()
    .references(() => environments.id, { onDelete: 'cascade' }),
  urls: jsonb('urls').$type<string[]>().notNull().default([]),
  secretEnc: text('secret_enc').notNull(),
  secretHint: text('secret_hint').notNull(),
  previousSecretEnc: text('previous_secret_enc'),
  previousSecretExpiresAt: timestamp('previous_secret_expires_at', { withTimezone: true }),
  ...timestamps,
});

export type DeliveryStatus = 'pending' | 'delivered' | 'failed';

/** One event sent to one URL: attempts, last answer, so a lost webhook can be seen and resent. */
export const webhookDeliveries = pgTable(
  'webhook_deliveries',
  {
    id: uuid('id').primaryKey(),
    environmentId: environmentRef(),
    eventId: bigint('event_id', { mode: 'number' })
      .notNull()
      .references(() => events.id, { onDelete: 'cascade' }),
    url: text('url').notNull(),
    status: text('status').$type<DeliveryStatus>().notNull().default('pending'),
    attempts: integer('attempts').notNull().default(0),
    lastStatusCode: integer('last_status_code'),
    lastError: text('last_error'),
    lastAttemptAt: timestamp('last_attempt_at', { withTimezone: true }),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
    ...timestamps,
  },
  (t) => [
    index('webhook_deliveries_environment_idx').on(t.environmentId, t.createdAt),
    uniqueIndex('webhook_deliveries_event_url_key').on(t.eventId, t.url),
    // The sweep for deliveries whose job was lost reads only pending ones, the oldest first.
    index('webhook_deliveries_pending_idx')
      .on(t.updatedAt)
      .where(sql`${t.status} = 'pending'`),
  ],
);
