import { sql } from 'drizzle-orm';
import { index, pgTable, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

const timestamps = {
  createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
  updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
};
export { timestamps };

/** The owner of environments in a hosted, multi-tenant deployment (one row in a self-hosted one). */
export const accounts = pgTable('accounts', {
  id: uuid('id')
    .primaryKey()
    .default(sql`gen_random_uuid()`),
  name: text('name').notNull(),
  ...timestamps,
});

/** The tenant boundary: every other row belongs to exactly one environment. */
export const environments = pgTable(
  'environments',
  {
    id: uuid('id')
      .primaryKey()
      .default(sql`gen_random_uuid()`),
    accountId: uuid('account_id')
      .notNull()
      .references(() => accounts.id, { onDelete: 'cascade' }),
    name: text('name').notNull(),
    /** SHA-256 (hex) of the secret key; the key itself is never stored. */
    secretKeyHash: text('secret_key_hash').notNull(),
    /** First characters of the key, to tell keys apart in listings. */
    secretKeyHint: text('secret_key_hint').notNull(),
    secretKeyRotatedAt: timestamp('secret_key_rotated_at', { withTimezone: true }),
    ...timestamps,
  },
  (t) => [
    uniqueIndex('environments_secret_key_hash_key').on(t.secretKeyHash),
    uniqueIndex('environments_account_name_key').on(t.accountId, t.name),
    index('environments_account_idx').on(t.accountId),
  ],
);

/** The tenant column every other table carries; deleting the environment deletes the row. */
export const environmentRef = () =>
  uuid('environment_id')
    .notNull()
    .references(() => environments.id, { onDelete: 'cascade' });
