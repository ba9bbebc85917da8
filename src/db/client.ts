import { execFile } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { type Logger, type SQL, sql } from 'drizzle-orm';
import { drizzle as drizzlePg } from 'drizzle-orm/node-postgres';
import { migrate as migratePg } from 'drizzle-orm/node-postgres/migrator';
import type { PgDatabase, PgQueryResultHKT } from 'drizzle-orm/pg-core';
import { drizzle as drizzlePglite } from 'drizzle-orm/pglite';
import { migrate as migratePglite } from 'drizzle-orm/pglite/migrator';
import pg from 'pg';
import * as schema from './schema/index.js';

export type Db = PgDatabase<PgQueryResultHKT, typeof schema>;
/** A transaction handle; repositories accept `Db | Tx` so callers can compose them. */
export type Tx = Parameters<Parameters<Db['transaction']>[0]>[0];
export type DbOrTx = Db | Tx;

export interface Database {
  readonly kind: 'postgres' | 'pglite';
  readonly db: Db;
  /** Runs pending migrations; safe to call from several processes at once. */
  migrate(): Promise<void>;
  ping(): Promise<void>;
  /** Queries waiting for a pooled connection (Postgres); PGlite has no pool and answers 0. */
  waitingForConnection(): number;
  /**
   * Calls `onMessage` for every NOTIFY on `channel` (cross-process cache invalidation). `onLost`
   * is called once if the session ends without being closed (its server connection dropped): the
   * caller listens again and assumes it missed notifications in between.
   */
  listen(channel: string, onMessage: (payload: string) => void, onLost?: (err: Error) => void): Promise<() => Promise<void>>;
  close(): Promise<void>;
}

export const migrationsFolder = fileURLToPath(new URL('../../migrations', import.meta.url));

// Any constant works; it only has to be the same in every Terapi process.
const MIGRATION_LOCK_ID = 7_283_461_902;

/** `application_name` of each process's LISTEN session. */
export const LISTEN_APPLICATION_NAME = 'terapi-listen';

export interface DatabaseOptions {
  databaseUrl?: string;
  poolSize?: number;
  /** PGlite data directory; `undefined` keeps the embedded database in memory (tests). */
  pgliteDir?: string;
  /**
   * An in-memory PGlite starts from this dump (`dumpPgliteTemplate`) instead of running initdb:
   * about 0.6 s instead of 3-4 s, which each test file pays.
   */
  pgliteTemplate?: Blob;
  onError?: (err: Error) => void;
  /** Sees every statement sent through drizzle, with its parameters (tests check their query plans). */
  onQuery?: (query: string, params: unknown[]) => void;
}

export async function openDatabase(opts: DatabaseOptions): Promise<Database> {
  return opts.databaseUrl ? openPostgres(opts.databaseUrl, opts) : openPglite(opts.pgliteDir, opts);
}

async function openPostgres(url: string, opts: DatabaseOptions): Promise<Database> {
  const pool = new pg.Pool({ connectionString: url, max: opts.poolSize ?? 20, idleTimeoutMillis: 30_000 });
  // An idle client losing its connection must not crash the process; the pool replaces it.
  pool.on('error', (err) => opts.onError?.(err));
  const db = drizzlePg(pool, { schema, logger: queryLogger(opts) }) as unknown as Db;
  const listeners: pg.Client[] = [];
  return {
    kind: 'postgres',
    db,
    waitingForConnection: () => pool.waitingCount,
    async migrate() {
      const client = await pool.connect();
      try {
        await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK_ID]);
        try {
          await migratePg(drizzlePg(client), { migrationsFolder });
        } finally {
          await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK_ID]);
        }
      } finally {
        client.release();
      }
    },
    async ping() {
      await pool.query('SELECT 1');
    },
    async listen(channel, onMessage, onLost) {
      // LISTEN needs a dedicated session, outside the pool; named so operators can find it in
      // pg_stat_activity. Keep-alives notice a peer that vanished without closing the socket.
      const client = new pg.Client({
        connectionString: url,
        application_name: LISTEN_APPLICATION_NAME,
        connectionTimeoutMillis: 10_000,
        keepAlive: true,
        keepAliveInitialDelayMillis: 10_000,
      });
      let closing = false;
      let lastError: Error | undefined;
      client.on('error', (err) => (lastError = err));
      client.on('end', () => {
        if (!closing && listeners.includes(client)) {
          listeners.splice(listeners.indexOf(client), 1);
          onLost?.(lastError ?? new Error('the LISTEN connection was closed by the server'));
        }
      });
      client.on('notification', (n) => {
        if (n.channel === channel) onMessage(n.payload ?? '');
      });
      try {
        await client.connect();
        await client.query(`LISTEN ${pg.escapeIdentifier(channel)}`);
      } catch (err) {
        closing = true;
        await client.end().catch(() => undefined);
        throw err;
      }
      listeners.push(client);
      return async () => {
        closing = true;
        if (listeners.includes(client)) listeners.splice(listeners.indexOf(client), 1);
        await client.end().catch(() => undefined);
      };
    },
    async close() {
      // Ending them here is a close, not a loss: their `end` handlers find them gone from the list.
      await Promise.allSettled(listeners.splice(0).map((c) => c.end()));
      await pool.end();
    },
  };
}

/** A migrated in-memory PGlite's data directory, for `pgliteTemplate`. */
export async function dumpPgliteTemplate(): Promise<Blob> {
  const client = await PGlite.create();
  await migratePglite(drizzlePglite(client), { migrationsFolder });
  const dump = await client.dumpDataDir('none');
  await client.close();
  return dump;
}

/**
 * Postgres' shared buffers inside PGlite's WASM memory. Postgres' default (128 MB) is resident for
 * the life of the process; the data files are also in the OS page cache (a data directory) or in
 * the JS heap (in memory), so a smaller pool costs a copy on a miss, not a disk read.
 */
const PGLITE_SHARED_BUFFERS = '32MB';

/**
 * Creates a new PGlite data directory in a short-lived child process. initdb grows the WASM
 * memory of the instance that runs it to ~630 MB, and WASM memory is never given back: a process
 * that ran initdb itself held ~850 MB RSS for its whole life, against ~240 MB after a restart.
 */
async function initPgliteDir(dir: string): Promise<void> {
  if (existsSync(path.join(dir, 'PG_VERSION'))) return;
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  const script = `require(${JSON.stringify(entry)}).PGlite.create(process.argv[1]).then((c) => c.close())
    .catch((err) => { console.error(err); process.exit(1); });`;
  try {
    await promisify(execFile)(process.execPath, ['-e', script, dir], { timeout: 300_000 });
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new Error(`could not create the embedded database in ${dir}${stderr ? `: ${stderr.slice(-500)}` : ''}`, { cause: err });
  }
}

async function openPglite(dir: string | undefined, opts: DatabaseOptions): Promise<Database> {
  const template = opts.pgliteTemplate;
  if (dir) {
    mkdirSync(path.dirname(dir), { recursive: true, mode: 0o700 });
    await initPgliteDir(dir);
  }
  const client = await PGlite.create(dir, {
    ...(template && { loadDataDir: template }),
    postgresqlconf: [`shared_buffers=${PGLITE_SHARED_BUFFERS}`],
  });
  const db = drizzlePglite(client, { schema, logger: queryLogger(opts) }) as unknown as Db;
  return {
    kind: 'pglite',
    waitingForConnection: () => 0,
    db,
    async migrate() {
      await migratePglite(drizzlePglite(client), { migrationsFolder });
    },
    async ping() {
      await db.execute(sql`SELECT 1`);
    },
    // In-process: NOTIFY reaches LISTEN in the same PGlite instance, and there is no connection to lose.
    async listen(channel, onMessage) {
      return client.listen(channel, onMessage);
    },
    async close() {
      await client.close();
    },
  };
}

function queryLogger(opts: DatabaseOptions): Logger | undefined {
  const onQuery = opts.onQuery;
  return onQuery && { logQuery: (query, params) => onQuery(query, params) };
}

/** Rows of a raw SQL query; both drivers return `{ rows }`. */
export async function queryRows<T>(db: DbOrTx, query: SQL): Promise<T[]> {
  // The two drivers type `execute` differently; both answer `{ rows }`.
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-type-assertion -- the union of both drivers' results is not `{ rows: T[] }`
  const result = (await db.execute(query)) as unknown as { rows: T[] };
  return result.rows;
}
