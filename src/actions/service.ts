import { and, eq, lt } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { runs } from '../db/schema/index.js';
import type { ConnectionReader } from '../connections/reader.js';
import type { FunctionRegistry } from '../functions/registry.js';
import type { FunctionLookup } from '../functions/service.js';
import { FailedDependencyError, NotFoundError, ValidationError } from '../lib/errors.js';
import type { Queues } from '../queue/queues.js';
import { findRun, insertRun, type RunRow } from '../runs/repository.js';
import { needsReauthorization } from '../tokens/failures.js';

export interface ActionTrigger {
  providerConfigKey: string;
  connectionId: string;
  actionName: string;
  input: unknown;
  async: boolean;
}

export type ActionOutcome = { state: 'done'; run: RunRow } | { state: 'pending'; run: RunRow };

export type ActionService = ReturnType<typeof createActionService>;

/** Validates and queues action runs, and waits for them when the caller wants the result now. */
export function createActionService(deps: {
  db: Db;
  reader: ConnectionReader;
  registry: FunctionRegistry;
  functions: Pick<FunctionLookup, 'findConfig'>;
  queues: Queues;
  waitMs: number;
}) {
  const { db, registry, queues } = deps;

  return {
    async trigger(environmentId: string, t: ActionTrigger): Promise<ActionOutcome> {
      const conn = await deps.reader.get(environmentId, t.providerConfigKey, t.connectionId);
      if (!conn) throw NotFoundError.connection(t.providerConfigKey, t.connectionId);
      const def = registry.action(conn.provider, t.actionName);
      if (!def) throw new NotFoundError(`Action "${t.actionName}" does not exist for ${conn.provider}`, 'unknown_action');
      if (!(await deps.functions.findConfig(environmentId, conn.integrationId, t.actionName))) {
        throw new NotFoundError(
          `Action "${t.actionName}" is not enabled on integration "${t.providerConfigKey}": enable it with POST /integration/${t.providerConfigKey}/functions`,
          'function_not_enabled',
        );
      }
      if (needsReauthorization(conn.error)) {
        throw new FailedDependencyError(
          'connection_needs_reauthorization',
          `Connection "${t.connectionId}" must be re-authorized by its user: ${conn.error.message}`,
        );
      }
      const parsed = def.input.safeParse(t.input ?? {});
      if (!parsed.success) {
        const details = parsed.error.issues.map((i) => ({ field: ['input', ...i.path.map(String)].join('.'), message: i.message }));
        throw new ValidationError(`${details[0]!.field}: ${details[0]!.message}`, details);
      }
      // The run exists in Postgres before its job: a lost job is re-queued from the row.
      const run = await insertRun(db, {
        environmentId,
        connectionPk: conn.id,
        type: 'action',
        functionName: t.actionName,
        trigger: 'api',
        status: 'queued',
        async: t.async,
        input: parsed.data,
      });
      const job = await queues.add('actions', { runId: run.id }, { jobId: run.id });
      if (t.async || deps.waitMs === 0) return { state: 'pending', run };
      // Whether the wait ends with the job's completion, its failure or the time limit, the
      // outcome is read from the run row, which the worker writes before its job completes.
      // The completion event can be missed (a QueueEvents reader that started listening after the
      // job finished), so the row is also polled, ever less often, until the deadline.
      const deadline = Date.now() + deps.waitMs;
      let settled = false;
      const byEvent = queues
        .actionEvents()
        .then((events) => job.waitUntilFinished(events, deps.waitMs))
        .catch(() => undefined)
        .finally(() => (settled = true));
      const byPolling = (async () => {
        for (let delay = 100; !settled && Date.now() < deadline; delay = Math.min(delay * 2, 1000)) {
          await new Promise((r) => setTimeout(r, Math.min(delay, Math.max(0, deadline - Date.now()))));
          const current = await findRun(db, environmentId, run.id);
          if (current && (current.status === 'success' || current.status === 'error')) return;
        }
      })();
      await Promise.race([byEvent, byPolling]);
      settled = true;
      const done = await findRun(db, environmentId, run.id);
      if (!done || done.status === 'queued' || done.status === 'running') return { state: 'pending', run: done ?? run };
      return { state: 'done', run: done };
    },

    /** Re-adds the jobs of action runs queued for `olderThanMs` (their job may have been lost with Redis); an existing job id is a no-op. */
    async requeueQueued(olderThanMs: number): Promise<void> {
      const rows = await db
        .select({ id: runs.id })
        .from(runs)
        .where(and(eq(runs.type, 'action'), eq(runs.status, 'queued'), lt(runs.createdAt, new Date(Date.now() - olderThanMs))))
        .limit(1000);
      for (const r of rows) await queues.add('actions', { runId: r.id }, { jobId: r.id });
    },

    async get(environmentId: string, id: string): Promise<RunRow> {
      const run = await findRun(db, environmentId, id);
      if (!run || run.type !== 'action') throw new NotFoundError(`Action run "${id}" not found`);
      return run;
    },
  };
}
