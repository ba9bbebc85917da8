import { randomUUID } from 'node:crypto';
import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { DrizzleQueryError } from 'drizzle-orm';
import type { z } from 'zod';
import type { Db } from '../db/client.js';
import type { RunError, SyncCheckpoint } from '../db/schema/index.js';
import type { ConnectionLookup } from '../connections/service.js';
import { recordEvent } from '../events/repository.js';
import { ProviderError, type SyncContext, type SyncDefinition } from '../functions/define.js';
import type { FunctionRegistry } from '../functions/registry.js';
import { createRunLog, type FunctionRuntime } from '../functions/runtime.js';
import type { Logger } from '../lib/logger.js';
import { clearSeen, createRecordWriter, deleteUnseenRecords, startSeen } from '../records/writer.js';
import { addRunCounts, finishRun, findRunById, insertRun, runCountsUpdate, startRun } from '../runs/repository.js';
import * as repo from './repository.js';
import { errorMessage } from '../lib/errors.js';

export interface SyncRunnerDeps {
  db: Db;
  registry: FunctionRegistry;
  runtime: FunctionRuntime;
  connections: Pick<ConnectionLookup, 'findById'>;
  log: Logger;
  leaseMs: number;
  timeoutMs: number;
  /** Wakes a worker for a sync that became due again (a trigger arrived during the run). */
  enqueue(syncId: number): Promise<void>;
}

type Counts = { added: number; updated: number; deleted: number };

/** Records a run validates and serializes between two turns of the event loop. */
const PREPARE_SLICE = 100;

/** Longest record id, in UTF-8 bytes: ids are part of the records' primary key (a btree entry). */
const MAX_ID_BYTES = 1024;

/** Why a record's id cannot be stored, if it cannot. */
function idProblem(id: unknown): string | undefined {
  if (typeof id === 'number') return Number.isFinite(id) ? undefined : 'has an id that is not a finite number';
  if (typeof id !== 'string' || id === '') return 'has no id (a non-empty string or a number)';
  if (id.length > MAX_ID_BYTES / 3 && Buffer.byteLength(id) > MAX_ID_BYTES) return `has an id longer than ${MAX_ID_BYTES} bytes`;
  if (id.includes('\0')) return 'has an id with a NUL character';
  return undefined;
}

/** The message and upstream answer of whatever a function threw. */
/** Why a run was stopped at its time limit (the abort reason); its run error's code is `time_limit`. */
export class TimeLimitError extends Error {
  constructor(what: 'run' | 'action', ms: number) {
    super(`${what} timed out after ${Math.round(ms / 1000)} s`);
    this.name = 'TimeLimitError';
  }
}

export function runErrorOf(err: unknown, signal?: AbortSignal): RunError {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    return { message: errorMessage(reason), code: reason instanceof TimeLimitError ? 'time_limit' : 'aborted' };
  }
  if (err instanceof ProviderError)
    return { message: err.message, upstream: { status: err.status, body: err.body.slice(0, 4000) }, code: 'provider_error' };
  // The database's own message: drizzle's wrapper repeats the statement and every parameter (records).
  if (err instanceof DrizzleQueryError && err.cause instanceof Error) return { message: err.cause.message };
  return { message: err instanceof Error ? err.message : String(err) };
}

function validator(def: SyncDefinition, model: string): z.ZodType {
  const schema = def.models[model];
  if (!schema) throw new Error(`unknown model "${model}": this sync declares ${Object.keys(def.models).join(', ')}`);
  return schema;
}

/**
 * Runs one sync to completion if it is due: takes the lease (or recovers an expired one), executes
 * the function with a context whose writes go to the records store, then records the outcome, the
 * webhook event and the next schedule in one transaction.
 */
export function createSyncRunner(deps: SyncRunnerDeps) {
  const { db, log } = deps;
  const active = new Map<string, AbortController>();

  async function run(syncId: number, workerSignal?: AbortSignal): Promise<'ran' | 'skipped'> {
    const claim = await db.transaction(async (tx) => {
      const c = await repo.claimSync(tx, syncId, randomUUID(), deps.leaseMs);
      if (!c) return undefined;
      const sync = (await repo.findSyncById(tx, syncId))!;
      if (c.recovered) {
        const previous = await findRunById(tx, c.runId);
        if (previous && (await startRun(tx, c.runId, previous.attempt + 1)))
          return {
            ...c,
            sync,
            attempt: previous.attempt + 1,
            fullResync: previous.fullResync,
            startedAt: previous.startedAt ?? new Date(),
          };
        // The lease pointed at a run that is gone or finished: start a fresh one under the lease.
      }
      const inserted = await insertRun(tx, {
        id: c.runId,
        environmentId: sync.environmentId,
        connectionPk: sync.connectionPk,
        syncId,
        type: 'sync',
        functionName: sync.name,
        trigger: c.trigger,
        status: 'running',
        fullResync: c.fullResync,
        startedAt: new Date(),
      });
      return { ...c, sync, attempt: 1, startedAt: inserted.startedAt ?? new Date() };
    });
    if (!claim) return 'skipped';
    const { sync, runId } = claim;
    const runLog = createRunLog(db, runId, log);
    if (claim.attempt > 1) runLog.warn(`resumed: attempt ${claim.attempt - 1} stopped without finishing (its worker was lost)`);

    const controller = new AbortController();
    active.set(runId, controller);
    const timeout = setTimeout(() => controller.abort(new TimeLimitError('run', deps.timeoutMs)), deps.timeoutMs);
    const onWorkerStop = () => controller.abort(new Error('the worker is shutting down; the run will be resumed'));
    workerSignal?.addEventListener('abort', onWorkerStop, { once: true });
    const heartbeat = setInterval(
      () => {
        repo
          .renewLease(db, syncId, runId, deps.leaseMs)
          .then((ok) => ok || controller.abort(new Error('the sync was deleted or taken over during the run')))
          .catch((err: unknown) => log.warn({ err, syncId }, 'could not renew sync lease'));
      },
      Math.max(500, deps.leaseMs / 3),
    );

    /** Full syncs: where this attempt's writes start (what it saw is staged in the database, not held here). */
    let seenSince: number | undefined;
    const writer = createRecordWriter(db, {
      connectionPk: sync.connectionPk,
      onCounts: (c) => runCountsUpdate(db, runId, c),
      stageSeenFor: () => (seenSince === undefined ? undefined : runId),
    });
    let outcome: { status: 'success' | 'error'; error?: RunError } = { status: 'success' };
    let def: SyncDefinition | undefined;
    // The first attempt's start: records modified after it are what this run changed.
    const { startedAt } = claim;
    try {
      const [conn] = await deps.connections.findById([sync.connectionPk]);
      if (!conn) throw new Error('the connection was deleted');
      def = deps.registry.sync(conn.provider, sync.name);
      if (!def) throw new Error(`sync "${sync.name}" does not exist for provider ${conn.provider}`);
      const definition = def;
      const full = definition.syncType === 'full' || claim.fullResync;
      runLog.info(`${full ? 'full' : 'incremental'} sync "${sync.name}" started`, { attempt: claim.attempt });
      // An attempt of a full sync fetches everything again: what an earlier one staged is dropped.
      if (full) seenSince = await startSeen(db, runId);

      /**
       * Validates items with the model's schema, serializes them and queues them for writing. The
       * event loop runs every PREPARE_SLICE records (across batches), so the writes queued before
       * keep going (their data drains into the socket, the database's answers are read) while
       * this process prepares more: a function saving page after page never yields by itself.
       */
      let sinceYield = 0;
      const save = async (model: string, items: unknown[]) => {
        controller.signal.throwIfAborted();
        const schema = validator(definition, model);
        const batch = await writer.batch(model);
        for (let i = 0; i < items.length; i++) {
          if (++sinceYield >= PREPARE_SLICE) {
            sinceYield = 0;
            await yieldToEventLoop();
          }
          const parsed = schema.safeParse(items[i]);
          if (!parsed.success) {
            const issue = parsed.error.issues[0]!;
            throw new Error(`record ${i} of ${model} does not match the model: ${issue.path.join('.') || '(record)'}: ${issue.message}`);
          }
          const problem = idProblem((parsed.data as { id?: unknown }).id);
          if (problem) throw new Error(`record ${i} of ${model} ${problem}`);
          const id = String((parsed.data as { id: string | number }).id);
          batch.add({ id, json: JSON.stringify(parsed.data) });
        }
        await writer.save(batch);
      };

      const base = await deps.runtime.context(conn, controller.signal, runLog);
      const ctx: SyncContext = {
        ...base,
        batchSave: (model, items) => save(model, items),
        batchUpdate: (model, items) => save(model, items),
        async batchDelete(model, items) {
          validator(definition, model);
          controller.signal.throwIfAborted();
          const problem = items.map((r, i) => [i, idProblem(r.id)] as const).find(([, p]) => p);
          if (problem) throw new Error(`record ${problem[0]} of ${model} ${problem[1]}`);
          await writer.delete(
            model,
            items.map((r) => String(r.id)),
          );
        },
        async getCheckpoint() {
          await writer.flush();
          if (full) return null;
          const current = await repo.findSyncById(db, syncId);
          return current?.checkpoint ?? null;
        },
        async saveCheckpoint(checkpoint: SyncCheckpoint) {
          // Never ahead of the records: the batches saved before it are written first.
          await writer.flush();
          controller.signal.throwIfAborted();
          if (!(await repo.saveCheckpoint(db, syncId, runId, checkpoint)))
            throw new Error('the sync was deleted or taken over during the run');
        },
      };
      await definition.exec(ctx);
      await writer.flush();
      controller.signal.throwIfAborted();
    } catch (err) {
      outcome = { status: 'error', error: runErrorOf(err, controller.signal) };
      // A batch may still be in flight (the function failed while it was written): let it end first.
      await writer.flush().catch(() => undefined);
    } finally {
      clearTimeout(timeout);
      clearInterval(heartbeat);
      workerSignal?.removeEventListener('abort', onWorkerStop);
      active.delete(runId);
    }

    const counts = new Map<string, Counts>(Object.keys(def?.models ?? {}).map((model) => [model, writer.counts(model)]));

    if (workerSignal?.aborted && outcome.status === 'error') {
      // Shutting down: keep the lease so the next worker resumes this run as its next attempt.
      runLog.warn('worker stopped during the run; it will be resumed');
      await repo.handBack(db, syncId, runId);
      await runLog.flush();
      return 'ran';
    }

    const full = def ? def.syncType === 'full' || claim.fullResync : false;
    const finished = await db.transaction(async (tx) => {
      if (outcome.status === 'success' && full && def && seenSince !== undefined) {
        for (const model of Object.keys(def.models)) {
          const deleted = await deleteUnseenRecords(tx, sync.connectionPk, model, { runId, since: seenSince });
          if (deleted) {
            await addRunCounts(tx, runId, { added: 0, updated: 0, deleted });
            const c = counts.get(model) ?? { added: 0, updated: 0, deleted: 0 };
            c.deleted += deleted;
            counts.set(model, c);
          }
        }
      }
      const row = await finishRun(tx, runId, outcome);
      const released = await repo.releaseSync(tx, syncId, runId, {
        status: outcome.status,
        error: outcome.error?.message,
        startedAt,
        clearCheckpoint: false,
      });
      if (!row || !released.released) return released;
      const [conn] = await deps.connections.findById([sync.connectionPk], tx);
      if (conn) {
        const models = def ? Object.keys(def.models) : [];
        for (const model of outcome.status === 'success' ? models : [models[0] ?? '']) {
          const c = counts.get(model) ?? { added: 0, updated: 0, deleted: 0 };
          await recordEvent(tx, {
            environmentId: sync.environmentId,
            type: 'sync',
            operation: outcome.status === 'success' ? 'finished' : 'failed',
            success: outcome.status === 'success',
            providerConfigKey: conn.providerConfigKey,
            connectionId: conn.connectionId,
            payload: {
              syncName: sync.name,
              model: model || null,
              runId,
              syncType: full ? 'full' : 'incremental',
              responseResults: c,
              modifiedAfter: startedAt.toISOString(),
              ...(outcome.error && { error: outcome.error }),
            },
          });
        }
      }
      return released;
    });
    if (seenSince !== undefined) await clearSeen(db, runId).catch((err: unknown) => log.warn({ err, runId }, 'could not clear seen ids'));
    const total = [...counts.values()].reduce(
      (a, c) => ({ added: a.added + c.added, updated: a.updated + c.updated, deleted: a.deleted + c.deleted }),
      { added: 0, updated: 0, deleted: 0 },
    );
    if (outcome.status === 'success') runLog.info('sync finished', total);
    else runLog.error(`sync failed: ${outcome.error?.message}`, outcome.error?.upstream ? { upstream: outcome.error.upstream } : undefined);
    await runLog.flush();
    log.info({ syncId, runId, status: outcome.status, ...total }, 'sync run finished');
    if (finished.dueAgain) await deps.enqueue(syncId);
    return 'ran';
  }

  return {
    run,
    /** Aborts every run in this process (shutdown); their leases make them resume elsewhere. */
    abortAll(reason: string) {
      for (const c of active.values()) c.abort(new Error(reason));
    },
  };
}
