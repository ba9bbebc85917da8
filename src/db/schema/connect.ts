import { sql } from 'drizzle-orm';
import { bigint, index, jsonb, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';
import { connections, type EndUser } from './connections.js';
import { environmentRef } from './environments.js';
import { integrationRef } from './integrations.js';

/** Per-integration defaults a connect session applies (Nango's `integrations_config_defaults`). */
export interface IntegrationDefaults {
  user_scopes?: string;
  authorization_params?: Record<string, string>;
  connection_config?: Record<string, unknown>;
}

/**
 * A short-lived grant for one end user to connect accounts from the Connect page. Only the hash of
 * its token is stored.
 */
export const connectSessions = pgTable(
  'connect_sessions',
  {
    id: uuid('id')
      .primaryKey()
      .default(sql`gen_random_uuid()`),
    environmentId: environmentRef(),
    tokenHash: text('token_hash').notNull(),
    endUser: jsonb('end_user').$type<EndUser & { tags?: Record<string, string> }>().notNull(),
    endUserId: text('end_user_id').notNull(),
    organization: jsonb('organization').$type<{ id: string; display_name?: string }>(),
    /** Integration keys the user may connect; null means every integration of the environment. */
    allowedIntegrations: text('allowed_integrations').array(),
    integrationsConfigDefaults: jsonb('integrations_config_defaults').$type<Record<string, IntegrationDefaults>>().notNull().default({}),
    tags: jsonb('tags').$type<Record<string, string>>().notNull().default({}),
    /** Where the Connect page may send the user after success, and the origin it may postMessage to. */
    redirectUrl: text('redirect_url'),
    allowedOrigin: text('allowed_origin'),
    /** Set for reconnect sessions: the connection whose credentials the flow replaces. */
    reconnectConnectionId: bigint('reconnect_connection_id', { mode: 'number' }).references(() => connections.id, { onDelete: 'cascade' }),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('connect_sessions_token_hash_key').on(t.tokenHash),
    index('connect_sessions_expires_idx').on(t.expiresAt),
    // Foreign keys that cascade: deleting an environment or a connection finds its sessions by index.
    index('connect_sessions_environment_idx').on(t.environmentId),
    index('connect_sessions_reconnect_connection_idx').on(t.reconnectConnectionId),
  ],
);

/** One authorization-code flow in progress: usable once, for ten minutes. */
export const oauthSessions = pgTable(
  'oauth_sessions',
  {
    id: uuid('id')
      .primaryKey()
      .default(sql`gen_random_uuid()`),
    environmentId: environmentRef(),
    integrationId: integrationRef(),
    connectSessionId: uuid('connect_session_id').references(() => connectSessions.id, { onDelete: 'cascade' }),
    /** SHA-256 of the `state` parameter. */
    stateHash: text('state_hash').notNull(),
    /** Vault ciphertext of the PKCE code verifier (absent when the provider cannot do PKCE). */
    codeVerifierEnc: text('code_verifier_enc'),
    connectionId: text('connection_id').notNull(),
    connectionConfig: jsonb('connection_config').$type<Record<string, unknown>>().notNull().default({}),
    redirectUri: text('redirect_uri').notNull(),
    expiresAt: timestamp('expires_at', { withTimezone: true }).notNull(),
    consumedAt: timestamp('consumed_at', { withTimezone: true }),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('oauth_sessions_state_hash_key').on(t.stateHash),
    index('oauth_sessions_expires_idx').on(t.expiresAt),
    index('oauth_sessions_environment_idx').on(t.environmentId),
    index('oauth_sessions_integration_idx').on(t.integrationId),
    index('oauth_sessions_connect_session_idx').on(t.connectSessionId),
  ],
);
