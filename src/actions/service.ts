import { and, eq, lt } from 'drizzle-orm';
import type { z } from 'zod';
import type { ConnectionWithIntegration } from '../connections/repository.js';
import type { Db } from '../db/client.js';
import { runs } from '../db/schema/index.js';
import type { ConnectionReader } from '../connections/reader.js';
import type { FunctionRegistry } from '../functions/registry.js';
import type { FunctionLookup } from '../functions/service.js';
import { FailedDependencyError, NotFoundError, ValidationError } from '../lib/errors.js';
import type { Queues } from '../queue/queues.js';
import { findRun, insertActionRunIfEnabled, type RunRow } from '../runs/repository.js';
import { needsReauthorization } from '../tokens/failures.js';

export interface ActionTrigger {
  providerConfigKey: string;
  connectionId: string;
  actionName: string;
  input: unknown;
  async: boolean;
}

export type ActionOutcome = { state: 'done'; run: RunRow } | { state: 'pending'; run: Pick<RunRow, 'id' | 'status'> };

export type ActionService = ReturnType<typeof createActionService>;

/** Reads of the run row while waiting, in case the worker's signal was lost: after 1 s, then every 2, 4, 5, 5… s. */
const POLL_FIRST_MS = 1000;
const POLL_MAX_MS = 5000;

/** Why a trigger is refused once the action is known (checked before anything is written), or its parsed input. */
function refuse(
  conn: ConnectionWithIntegration,
  t: ActionTrigger,
  parsed: z.ZodSafeParseResult<unknown>,
): { error: Error; input?: undefined } | { error?: undefined; input: unknown } {
  if (needsReauthorization(conn.error)) {
    return {
      error: new FailedDependencyError(
        'connection_needs_reauthorization',
        `Connection "${t.connectionId}" must be re-authorized by its user: ${conn.error.message}`,
      ),
    };
  }
  if (!parsed.success) {
    const details = parsed.error.issues.map((i) => ({ field: ['input', ...i.path.map(String)].join('.'), message: i.message }));
    return { error: new ValidationError(`${details[0]!.field}: ${details[0]!.message}`, details) };
  }
  return { input: parsed.data };
}

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
  const finished = (row: RunRow | undefined): row is RunRow => row?.status === 'success' || row?.status === 'error';

  /**
   * Adds the run's job (`enqueue`) and waits until the run is finished or the wait runs out
   * (undefined). The worker signals the end (queues.actionCompletions); whatever ends the wait,
   * the outcome is the run row, which the worker writes before it signals. Signals can be lost,
   * so the row is also read now and then, ever less often.
   */
  async function waitForRun(environmentId: string, runId: string, enqueue: () => Promise<unknown>): Promise<RunRow | undefined> {
    const deadline = Date.now() + deps.waitMs;
    const signal = await queues.actionCompletions.wait(runId);
    let timer: NodeJS.Timeout | undefined;
    try {
      await enqueue();
      for (let delay = POLL_FIRST_MS; ; delay = Math.min(delay * 2, POLL_MAX_MS)) {
        const left = deadline - Date.now();
        if (left <= 0) return undefined;
        const woken = await Promise.race([
          signal.finished.then((row) => ({ row: row as RunRow | undefined })),
          new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), Math.min(delay, left)))),
        ]);
        clearTimeout(timer);
        // A row handed over by this process's own worker is the finished row: no need to read it.
        if (woken && finished(woken.row)) return woken.row;
        const current = await findRun(db, environmentId, runId);
        if (finished(current)) return current;
        // Signalled but not finished (the job failed before it could finish the run): nothing more will come.
        if (woken) return undefined;
      }
    } finally {
      clearTimeout(timer);
      signal.cancel();
    }
  }

  return {
    async trigger(environmentId: string, t: ActionTrigger): Promise<ActionOutcome> {
      const conn = await deps.reader.get(environmentId, t.providerConfigKey, t.connectionId);
      if (!conn) throw NotFoundError.connection(t.providerConfigKey, t.connectionId);
      const def = registry.action(conn.provider, t.actionName);
      if (!def) throw new NotFoundError(`Action "${t.actionName}" does not exist for ${conn.provider}`, 'unknown_action');
      const notEnabled = () =>
        new NotFoundError(
          `Action "${t.actionName}" is not enabled on integration "${t.providerConfigKey}": enable it with POST /integration/${t.providerConfigKey}/functions`,
          'function_not_enabled',
        );
      const refusal = refuse(conn, t, def.input.safeParse(t.input ?? {}));
      if (refusal.error) {
        // A disabled action is the first thing to report, as the insert below would.
        if (!(await deps.functions.findConfig(environmentId, conn.integrationId, t.actionName))) throw notEnabled();
        throw refusal.error;
      }
      // The run exists in Postgres before its job: a lost job is re-queued from the row.
      const run = await insertActionRunIfEnabled(db, {
        environmentId,
        connectionPk: conn.id,
        integrationId: conn.integrationId,
        functionName: t.actionName,
        async: t.async,
        input: refusal.input,
      });
      if (!run) throw notEnabled();
      if (t.async || deps.waitMs === 0) {
        await queues.add('actions', { runId: run.id }, { jobId: run.id });
        return { state: 'pending', run: { id: run.id, status: 'queued' } };
      }
      const done = await waitForRun(environmentId, run.id, () =>
        queues.add('actions', { runId: run.id, replyTo: queues.actionCompletions.replyTo }, { jobId: run.id }),
      );
      return done
        ? { state: 'done', run: done }
        : { state: 'pending', run: (await findRun(db, environmentId, run.id)) ?? { id: run.id, status: 'queued' } };
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
