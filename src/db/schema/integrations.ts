import { sql } from 'drizzle-orm';
import { bigint, jsonb, pgTable, text, uniqueIndex } from 'drizzle-orm/pg-core';
import { environmentRef, timestamps } from './environments.js';

export type UrlOverrides = Partial<Record<'authorization_url' | 'token_url' | 'api_base_url' | 'revocation_url', string>>;

/** One provider configured in one environment. Secrets are vault ciphertexts; params are plain. */
export const integrations = pgTable(
  'integrations',
  {
    id: bigint('id', { mode: 'number' }).primaryKey().generatedAlwaysAsIdentity(),
    environmentId: environmentRef(),
    uniqueKey: text('unique_key').notNull(),
    provider: text('provider').notNull(),
    displayName: text('display_name'),
    oauthClientId: text('oauth_client_id'),
    oauthClientSecretEnc: text('oauth_client_secret_enc'),
    oauthScopes: text('oauth_scopes')
      .array()
      .notNull()
      .default(sql`'{}'::text[]`),
    params: jsonb('params').$type<Record<string, unknown>>().notNull().default({}),
    secretsEnc: text('secrets_enc'),
    urlOverrides: jsonb('url_overrides').$type<UrlOverrides>().notNull().default({}),
    ...timestamps,
  },
  (t) => [uniqueIndex('integrations_environment_unique_key_key').on(t.environmentId, t.uniqueKey)],
);

/** A row that belongs to one integration and goes with it. */
export const integrationRef = () =>
  bigint('integration_id', { mode: 'number' })
    .notNull()
    .references(() => integrations.id, { onDelete: 'cascade' });
