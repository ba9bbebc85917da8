import { randomUUID } from 'node:crypto';
import type { z } from 'zod';
import type { Db } from '../db/client.js';
import type { RunError, SyncCheckpoint } from '../db/schema/index.js';
import { findConnectionsById } from '../connections/repository.js';
import { recordEvent } from '../events/repository.js';
import { ProviderError, type SyncContext, type SyncDefinition } from '../functions/define.js';
import type { FunctionRegistry } from '../functions/registry.js';
import { createRunLog, type FunctionRuntime } from '../functions/runtime.js';
import type { Logger } from '../lib/logger.js';
import * as records from '../records/repository.js';
import { addRunCounts, finishRun, findRunById, insertRun, startRun } from '../runs/repository.js';
import * as repo from './repository.js';

export interface SyncRunnerDeps {
  db: Db;
  registry: FunctionRegistry;
  runtime: FunctionRuntime;
  log: Logger;
  leaseMs: number;
  timeoutMs: number;
  /** Wakes a worker for a sync that became due again (a trigger arrived during the run). */
  enqueue(syncId: number): Promise<void>;
}

type Counts = { added: number; updated: number; deleted: number };

/**
 * Records per statement when a batchSave is written in chunks (larger batches only), so that
 * validating and serializing one chunk overlaps the database writing the previous one.
 */
const SAVE_CHUNK = 250;
/** The first chunks are smaller (50, 100, 200, then SAVE_CHUNK), so Postgres starts sooner. */
const SAVE_FIRST_CHUNK = 50;
const DUPLICATE_IN_BATCH = Symbol('an id appears in two chunks of one batch');

/** The message and upstream answer of whatever a function threw. */
export function runErrorOf(err: unknown, signal?: AbortSignal): RunError {
  if (signal?.aborted) {
    const reason = signal.reason;
    return { message: reason instanceof Error ? reason.message : String(reason), code: 'aborted' };
  }
  if (err instanceof ProviderError) return { message: err.message, upstream: { status: err.status, body: err.body.slice(0, 4000) }, code: 'provider_error' };
  return { message: err instanceof Error ? err.message : String(err) };
}

function validator(def: SyncDefinition, model: string): z.ZodType {
  const schema = (def.models as Record<string, z.ZodType>)[model];
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
        if (previous && (await startRun(tx, c.runId, previous.attempt + 1))) return { ...c, sync, attempt: previous.attempt + 1, fullResync: previous.fullResync, startedAt: previous.startedAt ?? new Date() };
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
    const timeout = setTimeout(() => controller.abort(new Error(`run timed out after ${Math.round(deps.timeoutMs / 1000)} s`)), deps.timeoutMs);
    const onWorkerStop = () => controller.abort(new Error('the worker is shutting down; the run will be resumed'));
    workerSignal?.addEventListener('abort', onWorkerStop, { once: true });
    const heartbeat = setInterval(() => {
      repo
        .renewLease(db, syncId, runId, deps.leaseMs)
        .then((ok) => ok || controller.abort(new Error('the sync was deleted or taken over during the run')))
        .catch((err: unknown) => log.warn({ err, syncId }, 'could not renew sync lease'));
    }, Math.max(500, deps.leaseMs / 3));

    const counts = new Map<string, Counts>();
    const seen = new Map<string, Set<string>>();
    let outcome: { status: 'success' | 'error'; error?: RunError } = { status: 'success' };
    let def: SyncDefinition | undefined;
    // The first attempt's start: records modified after it are what this run changed.
    const { startedAt } = claim;
    try {
      const [conn] = await findConnectionsById(db, [sync.connectionPk]);
      if (!conn) throw new Error('the connection was deleted');
      def = deps.registry.sync(conn.provider, sync.name);
      if (!def) throw new Error(`sync "${sync.name}" does not exist for provider ${conn.provider}`);
      const definition = def;
      const full = definition.syncType === 'full' || claim.fullResync;
      runLog.info(`${full ? 'full' : 'incremental'} sync "${sync.name}" started`, { attempt: claim.attempt });

      const write = async (model: string, fn: (tx: Parameters<Parameters<Db['transaction']>[0]>[0]) => Promise<Counts>) => {
        controller.signal.throwIfAborted();
        const c = await db.transaction(async (tx) => {
          const result = await fn(tx);
          await addRunCounts(tx, runId, result);
          return result;
        });
        const total = counts.get(model) ?? { added: 0, updated: 0, deleted: 0 };
        total.added += c.added;
        total.updated += c.updated;
        total.deleted += c.deleted;
        counts.set(model, total);
      };
      /** Validates items[from, to) with the model's schema and serializes them (the last of equal ids wins). */
      const prepare = (schema: z.ZodType, model: string, items: unknown[], from: number, to: number) => {
        const valid: Record<string, unknown>[] = [];
        for (let i = from; i < to; i++) {
          const parsed = schema.safeParse(items[i]);
          if (!parsed.success) {
            const issue = parsed.error.issues[0]!;
            throw new Error(`record ${i} of ${model} does not match the model: ${issue.path.join('.') || '(record)'}: ${issue.message}`);
          }
          valid.push(parsed.data as Record<string, unknown>);
        }
        return records.prepareRecords(valid);
      };
      const markSeen = (model: string, ids: Iterable<string>) => {
        if (!full) return;
        const set = seen.get(model) ?? new Set<string>();
        for (const id of ids) set.add(id);
        seen.set(model, set);
      };
      const save = async (model: string, items: unknown[]) => {
        const schema = validator(definition, model);
        if (items.length > SAVE_CHUNK) {
          const ids = await savePipelined(schema, model, items).catch((err: unknown) => {
            if (err === DUPLICATE_IN_BATCH) return undefined;
            throw err;
          });
          if (ids) return markSeen(model, ids);
          // An id repeated in two chunks (rolled back): the whole batch at once, where the last one wins.
        }
        const prepared = prepare(schema, model, items, 0, items.length);
        markSeen(model, prepared.map((r) => r.id));
        await write(model, (tx) => records.upsertRecords(tx, sync.connectionPk, model, prepared));
      };
      /**
       * A large batch is still one transaction (all or nothing, one lock, exact counts), written in
       * chunks so that this process validates and serializes chunk n+1 while Postgres writes chunk n.
       * Returns the ids written; rejects with DUPLICATE_IN_BATCH (nothing written) when an id
       * appears in two chunks, since the chunks could not then count it once.
       */
      const savePipelined = async (schema: z.ZodType, model: string, items: unknown[]): Promise<Set<string>> => {
        const ids = new Set<string>();
        await write(model, async (tx) => {
          const total: Counts = { added: 0, updated: 0, deleted: 0 };
          const add = (c: Counts) => {
            total.added += c.added;
            total.updated += c.updated;
          };
          // The lock is taken while the first chunk is prepared.
          let pending: Promise<Counts> = records.lockFeed(tx, sync.connectionPk, model).then(() => ({ added: 0, updated: 0, deleted: 0 }));
          try {
            for (let from = 0, size = SAVE_FIRST_CHUNK; from < items.length; from += size, size = Math.min(size * 2, SAVE_CHUNK)) {
              const chunk = prepare(schema, model, items, from, Math.min(from + size, items.length));
              for (const r of chunk) {
                if (ids.has(r.id)) throw DUPLICATE_IN_BATCH;
                ids.add(r.id);
              }
              const encoded = records.encodeRecords(tx, chunk);
              add(await pending);
              pending = records.upsertRecords(tx, sync.connectionPk, model, encoded, { locked: true });
            }
            add(await pending);
            return total;
          } catch (err) {
            // Let the statement in flight settle before the transaction rolls back.
            await pending.catch(() => undefined);
            throw err;
          }
        });
        return ids;
      };

      const base = await deps.runtime.context(conn, controller.signal, runLog);
      const ctx: SyncContext = {
        ...base,
        batchSave: (model, items) => save(model, items),
        batchUpdate: (model, items) => save(model, items),
        async batchDelete(model, items) {
          validator(definition, model);
          const ids = items.map((r) => String(r.id));
          await write(model, async (tx) => ({ added: 0, updated: 0, deleted: await records.deleteRecords(tx, sync.connectionPk, model, ids) }));
        },
        async getCheckpoint() {
          if (full) return null;
          const current = await repo.findSyncById(db, syncId);
          return current?.checkpoint ?? null;
        },
        async saveCheckpoint(checkpoint: SyncCheckpoint) {
          controller.signal.throwIfAborted();
          if (!(await repo.saveCheckpoint(db, syncId, runId, checkpoint))) throw new Error('the sync was deleted or taken over during the run');
        },
      };
      await definition.exec(ctx);
      controller.signal.throwIfAborted();
    } catch (err) {
      outcome = { status: 'error', error: runErrorOf(err, controller.signal) };
    } finally {
      clearTimeout(timeout);
      clearInterval(heartbeat);
      workerSignal?.removeEventListener('abort', onWorkerStop);
      active.delete(runId);
    }

    if (workerSignal?.aborted && outcome.status === 'error') {
      // Shutting down: keep the lease so the next worker resumes this run as its next attempt.
      runLog.warn('worker stopped during the run; it will be resumed');
      await repo.handBack(db, syncId, runId);
      await runLog.flush();
      return 'ran';
    }

    const full = def ? def.syncType === 'full' || claim.fullResync : false;
    const finished = await db.transaction(async (tx) => {
      if (outcome.status === 'success' && full && def) {
        for (const model of Object.keys(def.models)) {
          const deleted = await records.deleteRecordsNotSeen(tx, sync.connectionPk, model, [...(seen.get(model) ?? [])]);
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
      const [conn] = await findConnectionsById(tx, [sync.connectionPk]);
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
    const total = [...counts.values()].reduce((a, c) => ({ added: a.added + c.added, updated: a.updated + c.updated, deleted: a.deleted + c.deleted }), { added: 0, updated: 0, deleted: 0 });
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
