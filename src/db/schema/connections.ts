import { sql } from 'drizzle-orm';
import { bigint, boolean, index, integer, jsonb, pgTable, text, timestamp, uniqueIndex } from 'drizzle-orm/pg-core';
import { environmentRef, timestamps } from './environments.js';
import { integrationRef } from './integrations.js';

export type CredentialsType = 'OAUTH2' | 'OAUTH2_CC' | 'API_KEY' | 'BASIC';

export interface EndUser {
  id: string;
  email?: string;
  display_name?: string;
  organization?: { id: string; display_name?: string };
}

/** Why a connection needs attention (a failed refresh, revoked access); shown in listings. */
export interface ConnectionError {
  type: 'auth' | 'sync';
  code: string;
  message: string;
  at: string;
}

/**
 * One end user's authorized account on an integration. `environment_id` is repeated from the
 * integration so that every query can be scoped by tenant without a join.
 */
export const connections = pgTable(
  'connections',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    /**
     * The number the Nango-compatible API shows as the connection's `id` (Nango's is numeric):
     * random, so unlike `id` (a sequence shared by every tenant) it tells nothing about how many
     * connections the server holds. 53 bits: a JSON number, and a repeat within one environment
     * is as likely as guessing a 16-digit number.
     */
    publicId: bigint('public_id', { mode: 'number' })
      .notNull()
      .default(sql`floor(random() * 9007199254740991)::bigint`),
    environmentId: environmentRef(),
    integrationId: integrationRef(),
    connectionId: text('connection_id').notNull(),
    credentialsType: text('credentials_type').$type<CredentialsType>().notNull(),
    /** Vault ciphertext of the credentials JSON (tokens, keys, raw token response). */
    credentialsEnc: text('credentials_enc'),
    /** Plain copies of what the refresh scheduler needs; never secret. */
    credentialsExpiresAt: timestamp('credentials_expires_at', { withTimezone: true }),
    refreshable: boolean('refreshable').notNull().default(false),
    connectionConfig: jsonb('connection_config').$type<Record<string, unknown>>().notNull().default({}),
    metadata: jsonb('metadata').$type<Record<string, unknown>>().notNull().default({}),
    tags: jsonb('tags').$type<Record<string, string>>().notNull().default({}),
    endUserId: text('end_user_id'),
    endUser: jsonb('end_user').$type<EndUser>(),
    error: jsonb('error').$type<ConnectionError>(),
    lastRefreshedAt: timestamp('last_refreshed_at', { withTimezone: true }),
    /** Refresh lease: at most one process refreshes a connection; an expired lease is free again. */
    refreshLockOwner: text('refresh_lock_owner'),
    refreshLockUntil: timestamp('refresh_lock_until', { withTimezone: true }),
    /** After a transient refresh failure, no new attempt before this time (unless forced). */
    refreshRetryAt: timestamp('refresh_retry_at', { withTimezone: true }),
    refreshFailures: integer('refresh_failures').notNull().default(0),
    lastFetchedAt: timestamp('last_fetched_at', { withTimezone: true }),
    ...timestamps,
  },
  (t) => [
    uniqueIndex('connections_integration_connection_id_key').on(t.integrationId, t.connectionId),
    index('connections_environment_id_idx').on(t.environmentId, t.id),
    index('connections_environment_connection_id_idx').on(t.environmentId, t.connectionId),
    index('connections_environment_end_user_idx').on(t.environmentId, t.endUserId),
    index('connections_refresh_due_idx')
      .on(t.credentialsExpiresAt)
      .where(sql`${t.refreshable}`),
  ],
);
