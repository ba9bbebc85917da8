import { sql } from 'drizzle-orm';
import { bigint, boolean, index, jsonb, pgTable, text, timestamp } from 'drizzle-orm/pg-core';
import { environmentRef } from './environments.js';

export type EventType = 'auth' | 'sync' | 'async_action';

/**
 * What happened that the SaaS backend should hear about (auth creations, overrides, refresh
 * failures; later sync and action results). Written in the same transaction as the change it
 * reports, so none is lost; the webhook sender delivers them and stamps `delivered_at`.
 */
export const events = pgTable(
  'events',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    environmentId: environmentRef(),
    type: text('type').$type<EventType>().notNull(),
    operation: text('operation').notNull(),
    success: boolean('success').notNull(),
    providerConfigKey: text('provider_config_key'),
    connectionId: text('connection_id'),
    payload: jsonb('payload').$type<Record<string, unknown>>().notNull().default({}),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    deliveredAt: timestamp('delivered_at', { withTimezone: true }),
  },
  (t) => [
    index('events_environment_idx').on(t.environmentId, t.id),
    index('events_undelivered_idx')
      .on(t.id)
      .where(sql`${t.deliveredAt} IS NULL`),
    // Retention walks dispatched events oldest first.
    index('events_dispatched_created_idx')
      .on(t.createdAt)
      .where(sql`${t.deliveredAt} IS NOT NULL`),
  ],
);
