import type { Db } from '../db/client.js';
import type { RunError } from '../db/schema/index.js';
import type { ConnectionWithIntegration } from '../connections/repository.js';
import type { ConnectionReader } from '../connections/reader.js';
import type { ConnectionLookup } from '../connections/service.js';
import { recordEvent } from '../events/repository.js';
import type { FunctionRegistry } from '../functions/registry.js';
import { createRunLog, type FunctionRuntime } from '../functions/runtime.js';
import type { Logger } from '../lib/logger.js';
import { claimActionRun, finishActionRun, finishRun, type RunRow } from '../runs/repository.js';
import { runErrorOf, TimeLimitError } from '../syncs/runner.js';
import { asError } from '../lib/errors.js';

/**
 * What became of an action job. `event`: an `async_action` event waits for dispatch. `run`: the
 * finished row (absent when skipped, or when the run had already been failed as lost).
 */
export interface ActionResult {
  status: 'success' | 'error' | 'skipped';
  event: boolean;
  run?: RunRow;
}

/** Executes queued action runs on a worker; the result lands in the run row (and an event when async). */
export function createActionRunner(deps: {
  db: Db;
  registry: FunctionRegistry;
  runtime: FunctionRuntime;
  connections: Pick<ConnectionLookup, 'findById'>;
  reader: Pick<ConnectionReader, 'get'>;
  log: Logger;
  timeoutMs: number;
  serverUrl: string;
}) {
  const { db, log } = deps;

  return async function runAction(runId: string, workerSignal?: AbortSignal): Promise<ActionResult> {
    // The claim is the lock: a run that is gone or no longer queued was taken by someone else.
    const run = await claimActionRun(db, runId);
    if (!run) return { status: 'skipped', event: false };
    const runLog = createRunLog(db, runId, log);
    const controller = new AbortController();
    const timeout = setTimeout(() => controller.abort(new TimeLimitError('action', deps.timeoutMs)), deps.timeoutMs);
    const onStop = () => controller.abort(new Error('the worker shut down during the action'));
    workerSignal?.addEventListener('abort', onStop, { once: true });
    let result: { status: 'success'; output: unknown } | { status: 'error'; error: RunError };
    let conn: ConnectionWithIntegration | undefined;
    try {
      // The cached row (every write to the connection invalidates it) saves a query per action.
      conn = await deps.reader.get(run.environmentId, run.providerConfigKey, run.connectionId);
      if (conn?.id !== run.connectionPk) [conn] = await deps.connections.findById([run.connectionPk]);
      if (!conn) throw new Error('the connection was deleted');
      const def = deps.registry.action(conn.provider, run.functionName);
      if (!def) throw new Error(`action "${run.functionName}" does not exist for provider ${conn.provider}`);
      const ctx = await deps.runtime.context(conn, controller.signal, runLog);
      const input = def.input.parse(run.input);
      const raw = await Promise.race([
        def.exec(ctx, input),
        new Promise<never>((_, reject) =>
          controller.signal.addEventListener('abort', () => reject(asError(controller.signal.reason)), { once: true }),
        ),
      ]);
      const parsed = def.output.safeParse(raw);
      if (!parsed.success) {
        const issue = parsed.error.issues[0]!;
        throw new Error(`the action's output does not match its schema: ${issue.path.join('.') || '(output)'}: ${issue.message}`);
      }
      result = { status: 'success', output: parsed.data };
    } catch (err) {
      result = { status: 'error', error: runErrorOf(err, controller.signal) };
      runLog.error(`action failed: ${result.error.message}`);
    } finally {
      clearTimeout(timeout);
      workerSignal?.removeEventListener('abort', onStop);
    }
    const outcome = result.status === 'success' ? ({ status: 'success', output: result.output } as const) : result;
    // A synchronous run's outcome is one statement; an asynchronous one's comes with its webhook event.
    const finished = !run.async
      ? await finishActionRun(db, runId, outcome)
      : await db.transaction(async (tx) => {
          const row = await finishRun(tx, runId, outcome);
          if (row && conn) {
            await recordEvent(tx, {
              environmentId: run.environmentId,
              type: 'async_action',
              operation: 'done',
              success: result.status === 'success',
              providerConfigKey: conn.providerConfigKey,
              connectionId: conn.connectionId,
              payload: { id: runId, actionName: run.functionName, statusUrl: `${deps.serverUrl}/action/${runId}` },
            });
          }
          return row;
        });
    await runLog.flush();
    return { status: result.status, event: Boolean(run.async && finished && conn), run: finished };
  };
}
