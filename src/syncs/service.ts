import type { Db } from '../db/client.js';
import type { ConnectionReader } from '../connections/reader.js';
import type { ConnectionWithIntegration } from '../connections/repository.js';
import type { ConnectionLookup } from '../connections/service.js';
import type { IntegrationLookup } from '../integrations/service.js';
import type { SyncDefinition } from '../functions/define.js';
import { type FunctionRegistry, parseFrequency } from '../functions/registry.js';
import { openCursor, positionCursors, sealCursor } from '../lib/cursor.js';
import { ConflictError, NotFoundError, ValidationError } from '../lib/errors.js';
import type { Vault } from '../lib/vault.js';
import type { RecordLookup } from '../records/service.js';
import { findRun, findRunsById, listRunLogs, listSyncRuns, type RunRow } from '../runs/repository.js';
import * as repo from './repository.js';

export type SyncService = ReturnType<typeof createSyncService>;

export type SyncState = 'running' | 'success' | 'error' | 'paused';

export interface SyncView {
  sync: repo.SyncWithConfig;
  connection: ConnectionWithIntegration;
  definition: SyncDefinition | undefined;
  status: SyncState;
  frequencySeconds: number;
  recordCounts: Record<string, number>;
}

/** A sync waiting for its first run counts as running: it has been started and is queued. */
export function syncState(s: repo.SyncRow): SyncState {
  if (s.paused) return 'paused';
  if (s.runningRunId || !s.lastStatus) return 'running';
  return s.lastStatus;
}

/** Sync control: trigger, pause, start, frequency, status and runs, for one tenant at a time. */
export function createSyncService(deps: {
  db: Db;
  /** Seals the ids this service shows (a sync's id, a log line's position) so they reveal no server-wide serial. */
  vault: Vault;
  reader: ConnectionReader;
  registry: FunctionRegistry;
  connections: Pick<ConnectionLookup, 'findById'>;
  integrations: Pick<IntegrationLookup, 'find'>;
  records: Pick<RecordLookup, 'count'>;
  /** Wakes workers for syncs that are due now. */
  enqueue(ids: readonly number[]): Promise<void>;
}) {
  const { db, registry } = deps;

  async function connection(environmentId: string, key: string, connectionId: string) {
    const conn = await deps.reader.get(environmentId, key, connectionId);
    if (!conn) throw NotFoundError.connection(key, connectionId);
    return conn;
  }

  /** The named syncs of a connection; a name the provider has no sync for is a 400 naming the field. */
  async function named(environmentId: string, conn: ConnectionWithIntegration, names: readonly string[], field: string) {
    for (const name of names) {
      if (!registry.sync(conn.provider, name)) throw ValidationError.field(field, `"${name}" is not a sync of ${conn.provider}`);
    }
    const rows = await repo.listConnectionSyncs(db, environmentId, conn.id, names);
    const missing = names.filter((n) => !rows.some((r) => r.name === n));
    if (missing.length) {
      throw new NotFoundError(
        `Sync "${missing[0]}" is not enabled on integration "${conn.providerConfigKey}": enable it with POST /integration/${conn.providerConfigKey}/functions`,
        'sync_not_enabled',
      );
    }
    return rows;
  }

  /** What an integration-wide call (Nango style) acts on: an integration's syncs, of one connection or of all of them. */
  async function scope(environmentId: string, key: string, names: readonly string[] | undefined, connectionId?: string) {
    if (connectionId) {
      const conn = await connection(environmentId, key, connectionId);
      return { integrationId: conn.integrationId, names, connectionPk: conn.id };
    }
    const integration = await deps.integrations.find(environmentId, key);
    if (!integration) throw NotFoundError.integration(key);
    return { integrationId: integration.id, names };
  }

  /** Views of syncs whose connections are known: their record counts in one read for all of them. */
  async function views(rows: readonly { sync: repo.SyncWithConfig; conn: ConnectionWithIntegration }[]): Promise<SyncView[]> {
    const models = new Set<string>();
    const defs = rows.map(({ sync, conn }) => {
      const definition = registry.sync(conn.provider, sync.name);
      for (const m of Object.keys(definition?.models ?? {})) models.add(m);
      return definition;
    });
    const counts = await deps.records.count(
      rows.map((r) => r.conn.id),
      [...models],
    );
    return rows.map(({ sync, conn }, i) => {
      const definition = defs[i];
      const all = counts.get(conn.id) ?? {};
      return {
        sync,
        connection: conn,
        definition,
        status: syncState(sync),
        frequencySeconds: sync.frequencySeconds ?? sync.defaultFrequencySeconds,
        recordCounts: Object.fromEntries(Object.keys(definition?.models ?? {}).map((m) => [m, all[m] ?? 0])),
      };
    });
  }

  return {
    async trigger(environmentId: string, key: string, connectionId: string, names: readonly string[], opts: { reset: boolean }) {
      const conn = await connection(environmentId, key, connectionId);
      const rows = await named(environmentId, conn, names, 'syncs');
      const paused = rows.find((r) => r.paused);
      if (paused)
        throw new ConflictError(
          `Sync "${paused.name}" is paused for connection "${connectionId}": start it first (POST /sync/start)`,
          'sync_paused',
        );
      const ids = await repo.markDue(
        db,
        rows.map((r) => r.id),
        opts,
      );
      await deps.enqueue(ids);
      return rows.map((r) => ({ name: r.name, status: r.runningRunId ? 'queued_after_current_run' : 'queued' }));
    },

    async status(environmentId: string, key: string, connectionId: string, name: string): Promise<SyncView> {
      const conn = await connection(environmentId, key, connectionId);
      const [row] = await named(environmentId, conn, [name], 'sync_name');
      const [view] = await views([{ sync: row!, conn }]);
      return view!;
    },

    /**
     * One page of the status of syncs across an integration's connections (or one), `*` for all of
     * them, with each one's latest run. `cursor` is the `nextCursor` of the page before, bound to
     * this tenant and query.
     */
    async statuses(
      environmentId: string,
      key: string,
      names: readonly string[] | '*',
      connectionId: string | undefined,
      page: { cursor?: string; limit: number },
    ) {
      const cursorScope = `sync-status:${environmentId}:${key}:${connectionId ?? ''}:${names === '*' ? '*' : [...names].sort().join(',')}`;
      const after = page.cursor ? openCursor(deps.vault, cursorScope, page.cursor, ['number', 'number'] as const) : undefined;
      const where = await scope(environmentId, key, names === '*' ? undefined : names, connectionId);
      // One row more than asked tells whether another page follows.
      const rows = await repo.pageSyncs(db, environmentId, where, after, page.limit + 1);
      const more = rows.length > page.limit;
      if (more) rows.length = page.limit;
      const conns = new Map((await deps.connections.findById([...new Set(rows.map((r) => r.connectionPk))])).map((c) => [c.id, c]));
      const latest = new Map(
        (
          await findRunsById(
            db,
            rows.flatMap((r) => (r.lastRunId ? [r.lastRunId] : [])),
          )
        ).map((r) => [r.id, r]),
      );
      const ids = positionCursors(deps.vault, `sync:${environmentId}`);
      // A connection deleted since the page was read drops out of it.
      const known = rows.flatMap((sync) => {
        const conn = conns.get(sync.connectionPk);
        return conn ? [{ sync, conn }] : [];
      });
      const out = (await views(known)).map((v) => ({
        ...v,
        publicId: ids.seal(v.sync.id),
        latestRun: v.sync.lastRunId ? latest.get(v.sync.lastRunId) : undefined,
      }));
      const last = rows.at(-1);
      return { syncs: out, nextCursor: more && last ? sealCursor(deps.vault, cursorScope, [last.functionConfigId, last.id]) : null };
    },

    /**
     * Nango `POST /sync/start` and `/sync/pause`: for one connection or all of an integration's.
     * Integration-wide it is one UPDATE however many syncs match; started syncs run at the
     * scheduler's next tick. For one connection, its started syncs are woken at once.
     */
    async setPaused(environmentId: string, key: string, names: readonly string[], paused: boolean, connectionId?: string): Promise<number> {
      if (!connectionId) return repo.setPausedInScope(db, environmentId, await scope(environmentId, key, names), paused);
      // For one connection, an unknown or disabled name is an error (as for a trigger).
      const rows = await named(environmentId, await connection(environmentId, key, connectionId), names, 'syncs');
      const ids = await repo.setPaused(
        db,
        rows.map((r) => r.id),
        paused,
      );
      if (!paused) await deps.enqueue(ids);
      return ids.length;
    },

    async setFrequency(environmentId: string, key: string, connectionId: string, name: string, frequency: string | null) {
      const conn = await connection(environmentId, key, connectionId);
      const [row] = await named(environmentId, conn, [name], 'sync_name');
      let seconds: number | null = null;
      if (frequency !== null) {
        const parsed = parseFrequency(frequency);
        if ('error' in parsed) throw ValidationError.field('frequency', parsed.error);
        seconds = parsed.seconds;
      }
      await repo.setFrequency(db, row!.id, seconds);
      return { frequencySeconds: seconds ?? row!.defaultFrequencySeconds };
    },

    async runs(environmentId: string, key: string, connectionId: string, name: string, limit: number): Promise<RunRow[]> {
      const conn = await connection(environmentId, key, connectionId);
      const [row] = await named(environmentId, conn, [name], 'sync_name');
      return listSyncRuns(db, environmentId, row!.id, limit);
    },

    async run(environmentId: string, runId: string): Promise<RunRow> {
      const run = await findRun(db, environmentId, runId);
      if (!run) throw new NotFoundError(`Run "${runId}" not found`);
      return run;
    },

    /**
     * One page of a run's log lines. Each line's `id` is its position sealed for this run (it says
     * nothing of how many lines the server holds); `after` accepts only such an id of this run.
     */
    async runLogs(environmentId: string, runId: string, after: string | undefined, limit: number) {
      const run = await findRun(db, environmentId, runId);
      if (!run) throw new NotFoundError(`Run "${runId}" not found`);
      const positions = positionCursors(deps.vault, `run-logs:${environmentId}:${runId}`);
      const afterId = after === undefined ? 0 : positions.open(after, 'after');
      const lines = await listRunLogs(db, runId, afterId, limit);
      const logs = lines.map((l) => ({ ...l, id: positions.seal(l.id) }));
      return { logs, nextAfter: lines.length === limit ? (logs.at(-1)?.id ?? null) : null };
    },
  };
}
