/**
 * Bulk seeding of a scale database (1M connections, 1M syncs, 10M records, 5M runs at full size),
 * generated inside Postgres with `INSERT … SELECT generate_series(…)`: no per-row round trip.
 * Used by `bench/scale/seed.ts` (the CLI) and importable by tests, which seed a 100k-connection
 * database with it and check query plans.
 *
 * The database must be migrated and empty. Rows get explicit ids (`OVERRIDING SYSTEM VALUE`) so
 * that every table can point at the others by arithmetic instead of by joins: connection `n`
 * (0-based) has id `n + 1`, its sync has id `n + 1`, integration `i` has id `i + 1` and its one
 * sync function config id `i + 1`.
 */
import { createHash } from 'node:crypto';
import type { StoredCredentials } from '../../src/connections/credentials.js';
import { hashSecretKey, secretKeyHint } from '../../src/environments/keys.js';
import type { Vault } from '../../src/lib/vault.js';

/** The environment's secret key: fixed, so a seeded database can be measured by another process. */
export const SCALE_SECRET_KEY = 'terapi_sk_scale-benchmark-environment-key-000000000';
/** `TERAPI_ENCRYPTION_KEY` the credentials are encrypted with (only for throwaway benchmark databases). */
export const SCALE_ENCRYPTION_KEY = `scale:${createHash('sha256').update('terapi scale benchmark').digest('base64')}`;

export const SCALE_PROVIDER = 'github';
export const SCALE_SYNC_NAME = 'issues';
export const SCALE_MODEL = 'GithubIssue';
/** The seeded syncs run hourly; schedules are spread over 720 slots of 5 s (one scheduler tick each). */
export const SCALE_FREQUENCY_SECONDS = 3600;
const SLOTS = 720;

export const connectionIdOf = (n: number) => `scale-${n}`;
export const integrationKeyOf = (i: number) => `scale-github-${String(i).padStart(3, '0')}`;

export interface ScaleSizes {
  connections: number;
  records: number;
  runs: number;
  /** Events (webhook history) spread like runs; default runs / 10. */
  events?: number;
  /** Default 100. */
  integrations?: number;
  /** Connections of integration 0 (`GET /sync/status` on exactly this many syncs); default 10,000. */
  bigIntegrationConnections?: number;
  /** Records of each heavy connection (the delete and `modified_after` targets); default 100,000. */
  heavyRecords?: number;
  /** Runs and events are spread over this many days back; default retentionDays + 3. */
  runDays?: number;
  /** The retention the server is measured with (TERAPI_RETENTION_DAYS); default 30. */
  retentionDays?: number;
}

/** Where things are in a seeded database: what measurements address. */
export interface ScaleLayout {
  connections: number;
  integrations: number;
  /** Integration 0: exactly `connections` connections and syncs. */
  bigIntegration: { index: number; providerConfigKey: string; connections: number };
  records: number;
  /** Connections holding exactly `recordsEach` heavy records (plus, except the first, a few light ones). */
  heavy: { first: number; count: number; recordsEach: number };
  /** Holds exactly `heavy.recordsEach` records: the `modified_after` read and the delete target. */
  deleteTarget: { n: number; connectionId: string; providerConfigKey: string; records: number };
  runs: number;
  events: number;
  runDays: number;
  retentionDays: number;
  /** Runs (about) older than the retention, i.e. what housekeeping has to delete. */
  expiredRuns: number;
}

/** Integration of connection `n`: the first `big` go to integration 0, the rest round-robin over the others. */
export function integrationOf(layout: Pick<ScaleLayout, 'integrations' | 'bigIntegration'>, n: number): number {
  const big = layout.bigIntegration.connections;
  return n < big ? 0 : 1 + ((n - big) % (layout.integrations - 1));
}

export function scaleLayout(sizes: ScaleSizes): ScaleLayout {
  const connections = Math.floor(sizes.connections);
  const integrations = sizes.integrations ?? 100;
  const records = Math.floor(sizes.records);
  const runs = Math.floor(sizes.runs);
  if (integrations < 2) throw new Error('scale seed: at least 2 integrations');
  if (connections < 2 * integrations) throw new Error(`scale seed: at least ${2 * integrations} connections`);
  const bigConnections = Math.min(sizes.bigIntegrationConnections ?? 10_000, Math.floor(connections / 2));
  const recordsEach = Math.min(sizes.heavyRecords ?? 100_000, Math.floor(records / 2));
  // About a tenth of all records sit in heavy connections (10 of them at 10M records), at least one.
  const heavyCount = Math.max(
    1,
    Math.min(Math.floor((records * 0.1) / Math.max(1, recordsEach)), Math.floor(records / 2 / Math.max(1, recordsEach))),
  );
  const retentionDays = sizes.retentionDays ?? 30;
  const runDays = sizes.runDays ?? retentionDays + 3;
  const first = bigConnections; // the first connection of integration 1
  const layout: ScaleLayout = {
    connections,
    integrations,
    bigIntegration: { index: 0, providerConfigKey: integrationKeyOf(0), connections: bigConnections },
    records,
    heavy: { first, count: Math.min(heavyCount, connections - first), recordsEach },
    deleteTarget: { n: first, connectionId: connectionIdOf(first), providerConfigKey: '', records: recordsEach },
    runs,
    events: Math.floor(sizes.events ?? runs / 10),
    runDays,
    retentionDays,
    expiredRuns: Math.max(0, Math.floor((runs * (runDays - retentionDays)) / runDays)),
  };
  layout.deleteTarget.providerConfigKey = integrationKeyOf(integrationOf(layout, first));
  return layout;
}

/** What a seeding client must offer: `pg.Client` and `pg.Pool` do. */
export interface Queryable {
  query(text: string, values?: unknown[]): Promise<{ rows: Record<string, unknown>[]; rowCount: number | null }>;
}

export interface StepTiming {
  step: string;
  table: string;
  rows: number;
  ms: number;
}

export interface SeedOptions {
  /**
   * Encrypts each connection's credentials (one AES-GCM per row, sent in batches): token reads
   * then work. The vault binds each ciphertext to its row (environment, integration, connection
   * id), so one blob cannot be shared. Without a vault every row gets the same undecryptable
   * placeholder (enough for query-plan tests, and pure SQL).
   */
  vault?: Vault;
  /** Credentials' expiry; default 7 days ahead, so token reads and the background refresher never refresh. */
  credentialsExpireAt?: Date;
  /** `VACUUM ANALYZE` each table at the end (default true): plans and index-only scans as in a settled database. */
  analyze?: boolean;
  /**
   * Load the big tables without their secondary indexes and foreign-key triggers, then build the
   * indexes once (default true): several times faster than maintaining them row by row. The
   * indexes are recreated from their own definitions (pg_indexes), so indexes added by later
   * migrations are covered too; primary keys stay. The rows are consistent by construction, so
   * skipping the foreign-key checks (`session_replication_role = replica`, which needs a
   * superuser; skipped otherwise) loses nothing.
   */
  fast?: boolean;
  /** Called after each step (progress output). */
  onStep?: (t: StepTiming) => void;
}

export interface SeedResult {
  layout: ScaleLayout;
  environmentId: string;
  secretKey: string;
  /** The time schedules and record times are relative to. */
  seededAt: Date;
  timings: StepTiming[];
}

const CONNECTION_BATCH = 25_000;
const RECORD_CHUNK = 1_000_000;
const RUN_CHUNK = 1_000_000;

/** Seeds an empty, migrated database. */
export async function seedScale(client: Queryable, sizes: ScaleSizes, opts: SeedOptions = {}): Promise<SeedResult> {
  const layout = scaleLayout(sizes);
  const timings: StepTiming[] = [];
  const step = async (name: string, table: string, work: () => Promise<number>) => {
    const started = performance.now();
    const rows = await work();
    const t = { step: name, table, rows, ms: Math.round(performance.now() - started) };
    timings.push(t);
    opts.onStep?.(t);
  };
  const q = (text: string, values?: unknown[]) => client.query(text, values);

  // Bulk loading: a lost commit only loses the benchmark database, which is rebuilt anyway.
  await q('SET synchronous_commit = off');
  const fast = opts.fast ?? true;
  const bigTables = ['connections', 'syncs', 'records', 'runs', 'events'];
  let deferred: { table: string; name: string; def: string }[] = [];
  if (fast) {
    await q('SET session_replication_role = replica').catch(() => undefined);
    await q("SET maintenance_work_mem = '512MB'");
    const { rows } = await q(
      `SELECT i.tablename AS table, i.indexname AS name, i.indexdef AS def
         FROM pg_indexes i
        WHERE i.schemaname = 'public' AND i.tablename = ANY($1)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname AND c.connamespace = 'public'::regnamespace)`,
      [bigTables],
    );
    deferred = rows as typeof deferred;
    for (const d of deferred) await q(`DROP INDEX ${d.name}`);
    // Primary keys and unique constraints too where no foreign key points at the table (records):
    // one sorted build instead of millions of inserts into a text key.
    const { rows: cons } = await q(
      `SELECT c.conrelid::regclass::text AS table, c.conname AS name, pg_get_constraintdef(c.oid) AS def
         FROM pg_constraint c
        WHERE c.contype IN ('p', 'u') AND c.conrelid::regclass::text = ANY($1)
          AND NOT EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.confrelid = c.conrelid)`,
      [bigTables],
    );
    for (const c of cons) {
      await q(`ALTER TABLE ${c.table as string} DROP CONSTRAINT ${c.name as string}`);
      deferred.push({
        table: c.table as string,
        name: c.name as string,
        def: `ALTER TABLE ${c.table as string} ADD CONSTRAINT ${c.name as string} ${c.def as string}`,
      });
    }
  }
  const { rows: nowRows } = await q('SELECT now() AS now');
  const seededAt = new Date(nowRows[0]!.now as Date);
  const at = seededAt.toISOString();
  const expiresAt = (opts.credentialsExpireAt ?? new Date(seededAt.getTime() + 7 * 86_400_000)).toISOString();
  const { connections: N, integrations: I } = layout;
  const B = layout.bigIntegration.connections;
  // SQL twin of integrationOf(), for a bigint expression `n`.
  const integrationSql = (n: string) => `(CASE WHEN ${n} < ${B} THEN 0 ELSE 1 + (${n} - ${B}) % ${I - 1} END)`;

  let environmentId = '';
  await step('environment', 'environments', async () => {
    const { rows } = await q(
      `WITH a AS (INSERT INTO accounts (name) VALUES ('scale') RETURNING id)
       INSERT INTO environments (account_id, name, secret_key_hash, secret_key_hint)
       SELECT a.id, 'scale', $1, $2 FROM a RETURNING id`,
      [hashSecretKey(SCALE_SECRET_KEY), secretKeyHint(SCALE_SECRET_KEY)],
    );
    environmentId = rows[0]!.id as string;
    return 1;
  });

  await step('integrations', 'integrations', async () => {
    const secret = opts.vault ? opts.vault.encrypt('scale-client-secret', `integration.client_secret:${environmentId}`) : null;
    const r = await q(
      `INSERT INTO integrations (id, environment_id, unique_key, provider, oauth_client_id, oauth_client_secret_enc, oauth_scopes)
       OVERRIDING SYSTEM VALUE
       SELECT i + 1, $1, 'scale-github-' || lpad(i::text, 3, '0'), $2, 'scale-client', $3, '{repo}'
         FROM generate_series(0, $4::int - 1) i`,
      [environmentId, SCALE_PROVIDER, secret, I],
    );
    return r.rowCount ?? 0;
  });

  await step('function configs', 'function_configs', async () => {
    const r = await q(
      `INSERT INTO function_configs (id, environment_id, integration_id, name, type, frequency_seconds, auto_start)
       OVERRIDING SYSTEM VALUE
       SELECT i + 1, $1, i + 1, $2, 'sync', $3, true FROM generate_series(0, $4::int - 1) i`,
      [environmentId, SCALE_SYNC_NAME, SCALE_FREQUENCY_SECONDS, I],
    );
    return r.rowCount ?? 0;
  });

  const connectionColumns = `id, environment_id, integration_id, connection_id, credentials_type, credentials_enc,
    credentials_expires_at, refreshable, metadata, end_user_id, end_user, created_at, updated_at`;
  const connectionValues = (n: string, enc: string) =>
    `${n} + 1, $1::uuid, ${integrationSql(n)} + 1, 'scale-' || ${n}, 'OAUTH2', ${enc}, $2::timestamptz, true,
     jsonb_build_object('plan', CASE WHEN ${n} % 3 = 0 THEN 'pro' ELSE 'free' END), 'user-' || ${n},
     jsonb_build_object('id', 'user-' || ${n}), $3::timestamptz - make_interval(secs => ${n} % 86400), $3::timestamptz`;
  await step('connections', 'connections', async () => {
    if (!opts.vault) {
      const r = await q(
        `INSERT INTO connections (${connectionColumns}) OVERRIDING SYSTEM VALUE
         SELECT ${connectionValues('n', `'v1:placeholder:AAAA:AAAA'`)} FROM generate_series(0, $4::bigint - 1) n`,
        [environmentId, expiresAt, at, N],
      );
      return r.rowCount ?? 0;
    }
    const vault = opts.vault;
    const encrypt = (from: number) => {
      const encs: string[] = [];
      for (let n = from; n < Math.min(N, from + CONNECTION_BATCH); n++) {
        const integrationId = integrationOf(layout, n) + 1;
        const stored: StoredCredentials = {
          type: 'OAUTH2',
          access_token: `gho_scale${String(n).padStart(32, '0')}`,
          refresh_token: `ghr_scale${String(n).padStart(32, '0')}`,
          expires_at: expiresAt,
          token_type: 'bearer',
          raw: {},
        };
        // credentialsContext() in src/connections/credentials.ts: the ciphertext is bound to its row.
        encs.push(vault.encryptJson(stored, `connection.credentials:${environmentId}:${integrationId}:${connectionIdOf(n)}`));
      }
      return encs;
    };
    // Encrypting (this process) overlaps with inserting the previous batch (the database's).
    let total = 0;
    let inserting: Promise<unknown> = Promise.resolve();
    for (let from = 0; from < N; from += CONNECTION_BATCH) {
      const encs = encrypt(from);
      await inserting;
      inserting = q(
        `INSERT INTO connections (${connectionColumns}) OVERRIDING SYSTEM VALUE
         SELECT ${connectionValues('x.n', 'e.enc')}
           FROM unnest($4::text[]) WITH ORDINALITY AS e(enc, k), LATERAL (SELECT $5::bigint + e.k - 1 AS n) x`,
        [environmentId, expiresAt, at, encs, from],
      ).then((r) => (total += r.rowCount ?? 0));
    }
    await inserting;
    return total;
  });

  await step('syncs', 'syncs', async () => {
    // Hourly schedules spread over 720 five-second slots from the seeding time (a permutation of
    // the ids, so slot and id are unrelated): ~1/720 of the syncs become due per scheduler tick.
    // 1% are paused, half of those never scheduled (null next_run_at).
    const r = await q(
      `INSERT INTO syncs (id, environment_id, connection_pk, function_config_id, name, paused, next_run_at,
                          last_status, last_finished_at, last_success_started_at, created_at, updated_at)
       OVERRIDING SYSTEM VALUE
       SELECT n + 1, $1, n + 1, ${integrationSql('n')} + 1, $2, n % 100 = 99,
              CASE WHEN n % 200 = 199 THEN NULL ELSE $3::timestamptz + make_interval(secs => ((n * 7919) % ${SLOTS}) * 5) END,
              'success', $3::timestamptz - interval '1 hour', $3::timestamptz - interval '1 hour', $3::timestamptz, $3::timestamptz
         FROM generate_series(0, $4::bigint - 1) n`,
      [environmentId, SCALE_SYNC_NAME, at, N],
    );
    return r.rowCount ?? 0;
  });

  // Records: `data` is small JSON; modified times rise with the cursor (the feed order), over 30 days.
  const recordInsert = (select: string) =>
    `INSERT INTO records (connection_pk, model, external_id, data, hash, last_action, first_seen_at, modified_at)
     SELECT c, '${SCALE_MODEL}', ext, ('{"id":"' || ext || '","number":' || num || ',"title":"Issue ' || num || '","state":"open","labels":[]}')::json,
            md5(ext), CASE WHEN num % 5 = 0 THEN 'updated' ELSE 'added' END, t, t
       FROM (${select}) s`;
  const heavy = layout.heavy;
  await step('records (heavy connections)', 'records', async () => {
    let total = 0;
    for (let h = 0; h < heavy.count; h++) {
      const r = await q(
        recordInsert(
          `SELECT $1::bigint AS c, 'h' || i AS ext, i AS num,
                  $3::timestamptz - make_interval(secs => ($2::bigint - i) * (30 * 86400.0 / $2::bigint)) AS t
             FROM generate_series(0, $2::bigint - 1) i`,
        ),
        [heavy.first + h + 1, heavy.recordsEach, at],
      );
      total += r.rowCount ?? 0;
    }
    return total;
  });

  // The rest round-robin over every connection but the delete target (which keeps exactly
  // `recordsEach`), so one connection's records are spread through the table as syncs write them.
  const light = layout.records - heavy.count * heavy.recordsEach;
  const target = layout.deleteTarget.n;
  await step('records (spread)', 'records', async () => {
    let total = 0;
    for (let from = 0; from < light; from += RECORD_CHUNK) {
      const to = Math.min(light, from + RECORD_CHUNK) - 1;
      const r = await q(
        recordInsert(
          `SELECT (CASE WHEN j < ${target} THEN j ELSE j + 1 END) + 1 AS c, 'r' || r AS ext, r AS num,
                  $4::timestamptz - make_interval(secs => ($3::bigint - r) * (30 * 86400.0 / $3::bigint)) AS t
             FROM generate_series($1::bigint, $2::bigint) r, LATERAL (SELECT r % ${N - 1} AS j) x`,
        ),
        [from, to, light, at],
      );
      total += r.rowCount ?? 0;
    }
    return total;
  });

  await step('runs', 'runs', async () => {
    // Spread evenly over the last runDays days: the oldest (runDays - retentionDays) / runDays are past the retention.
    let total = 0;
    for (let from = 0; from < layout.runs; from += RUN_CHUNK) {
      const to = Math.min(layout.runs, from + RUN_CHUNK) - 1;
      const r = await q(
        `INSERT INTO runs (environment_id, connection_pk, sync_id, type, function_name, trigger, status, error,
                           added, updated, deleted, created_at, started_at, ended_at)
         SELECT $1, c, c, 'sync', $2, 'schedule', CASE WHEN u % 50 = 0 THEN 'error' ELSE 'success' END,
                CASE WHEN u % 50 = 0 THEN '{"message":"upstream error","code":"upstream"}'::jsonb END,
                u % 7, u % 3, 0, t, t + interval '1 second', t + interval '4 seconds'
           FROM generate_series($3::bigint, $4::bigint) u,
                LATERAL (SELECT (u % $5::bigint) + 1 AS c,
                                $6::timestamptz - make_interval(secs => u * ($7::int * 86400.0 / $8::bigint)) AS t) x`,
        [environmentId, SCALE_SYNC_NAME, from, to, N, at, layout.runDays, layout.runs],
      );
      total += r.rowCount ?? 0;
    }
    return total;
  });

  await step('events', 'events', async () => {
    if (layout.events === 0) return 0;
    const r = await q(
      `INSERT INTO events (environment_id, type, operation, success, provider_config_key, connection_id, payload, created_at, delivered_at)
       SELECT $1, 'sync', 'sync', true, 'scale-github-' || lpad(${integrationSql('c')}::text, 3, '0'), 'scale-' || c, '{}', t, t + interval '1 second'
         FROM generate_series(0, $2::bigint - 1) u,
              LATERAL (SELECT u % $3::bigint AS c, $4::timestamptz - make_interval(secs => u * ($5::int * 86400.0 / $2::bigint)) AS t) x`,
      [environmentId, layout.events, N, at, layout.runDays],
    );
    return r.rowCount ?? 0;
  });

  if (fast) {
    await q('SET session_replication_role = DEFAULT').catch(() => undefined);
    for (const table of bigTables) {
      const defs = deferred.filter((d) => d.table === table);
      if (!defs.length) continue;
      await step('indexes', table, async () => {
        for (const d of defs) await q(d.def);
        return 0;
      });
    }
  }

  await step('identity sequences', '-', async () => {
    for (const table of ['integrations', 'function_configs', 'connections', 'syncs']) {
      await q(`SELECT setval(pg_get_serial_sequence('${table}', 'id'), (SELECT max(id) FROM ${table}))`);
    }
    return 0;
  });

  if (opts.analyze ?? true) {
    for (const table of ['integrations', 'function_configs', 'connections', 'syncs', 'records', 'runs', 'events']) {
      await step('vacuum analyze', table, async () => {
        await q(`VACUUM (ANALYZE) ${table}`);
        return 0;
      });
    }
  }
  return { layout, environmentId, secretKey: SCALE_SECRET_KEY, seededAt, timings };
}
