import { sql } from 'drizzle-orm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { queryRows } from '../../src/db/client.js';
import { createTestDatabase, type TestDatabase } from '../helpers/app.js';

/**
 * Every foreign key has an index that starts with its column: deleting an environment, an
 * integration or a connection cascades into the tables that point at it, and without such an
 * index each cascade scans the whole referencing table.
 */
let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => db?.drop());

describe('the migrated schema', () => {
  it('indexes the column of every single-column foreign key (as the first column of some index)', async () => {
    const foreignKeys = await queryRows<{ table: string; column: string; indexed: boolean }>(
      db.database.db,
      sql`SELECT c.conrelid::regclass::text AS table,
                 a.attname AS column,
                 EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.conrelid AND i.indkey[0] = c.conkey[1]) AS indexed
            FROM pg_constraint c
            JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
           WHERE c.contype = 'f' AND array_length(c.conkey, 1) = 1
           ORDER BY 1, 2`,
    );
    // The query itself: the schema has foreign keys (connections → integrations, at least).
    expect(foreignKeys).toContainEqual(expect.objectContaining({ table: 'connections', column: 'integration_id' }));
    expect(foreignKeys.filter((fk) => !fk.indexed).map((fk) => `${fk.table}.${fk.column}`)).toEqual([]);
  });
});
