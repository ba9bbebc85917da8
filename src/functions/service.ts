import type { Db, DbOrTx } from '../db/client.js';
import type { IntegrationLookup } from '../integrations/service.js';
import { ValidationError, NotFoundError } from '../lib/errors.js';
import type { RecordPurges } from '../records/purges.js';
import type { FunctionDefinition } from './define.js';
import { type FunctionRegistry, parseFrequency } from './registry.js';
import * as repo from './repository.js';

export type FunctionService = ReturnType<typeof createFunctionService>;

/** What other domains read of enabled functions; they receive a narrowed copy from services.ts. */
export type FunctionLookup = FunctionService['lookup'];
/** The schedules other domains' writes create (a new connection gets its integration's syncs). */
export type FunctionSchedules = FunctionService['schedules'];

export interface FunctionView {
  definition: FunctionDefinition;
  config: repo.FunctionConfigRow | undefined;
}

export interface EnableInput {
  name: string;
  frequency?: string;
  autoStart?: boolean;
}

/** Which built-in functions an integration runs, with their frequency and auto-start. */
export function createFunctionService(deps: {
  db: Db;
  registry: FunctionRegistry;
  onSyncsDue(ids: number[]): Promise<void>;
  integrations: Pick<IntegrationLookup, 'find'>;
  /** A disabled sync's records are purged on the worker; enabling it again finishes that purge first. */
  purges: Pick<RecordPurges, 'wake' | 'forModels' | 'finishForModels'>;
}) {
  const { db, registry } = deps;

  async function integration(environmentId: string, key: string) {
    const row = await deps.integrations.find(environmentId, key);
    if (!row) throw NotFoundError.integration(key);
    return row;
  }

  return {
    lookup: {
      findConfig: (environmentId: string, integrationId: number, name: string) =>
        repo.findFunctionConfig(db, environmentId, integrationId, name),
    },
    schedules: {
      /** Inside the caller's transaction: the syncs enabled on the new connection's integration. */
      createForConnections: (tx: DbOrTx, connectionPks: readonly number[]) => repo.createSyncsForConnections(tx, connectionPks),
    },

    async list(environmentId: string, key: string): Promise<FunctionView[]> {
      const row = await integration(environmentId, key);
      const configs = await repo.listFunctionConfigs(db, environmentId, row.id);
      return registry
        .forProvider(row.provider)
        .map((definition) => ({ definition, config: configs.find((c) => c.name === definition.name) }));
    },

    async enable(environmentId: string, key: string, input: EnableInput): Promise<FunctionView & { created: boolean }> {
      const row = await integration(environmentId, key);
      const definition = registry.find(row.provider, input.name);
      if (!definition) {
        const names = registry.forProvider(row.provider).map((d) => d.name);
        throw ValidationError.field(
          'name',
          `"${input.name}" is not a function of ${row.provider}${names.length ? ` (available: ${names.join(', ')})` : ' (it has no built-in functions)'}`,
        );
      }
      // Enabling again changes only what the request names; the rest keeps its stored value.
      const existing = await repo.findFunctionConfig(db, environmentId, row.id, definition.name);
      let frequencySeconds: number | null = null;
      if (definition.type === 'sync') {
        const parsed =
          input.frequency === undefined && existing?.frequencySeconds
            ? { seconds: existing.frequencySeconds }
            : parseFrequency(input.frequency ?? definition.frequency);
        if ('error' in parsed) throw ValidationError.field('frequency', parsed.error);
        frequencySeconds = parsed.seconds;
      } else if (input.frequency !== undefined) {
        throw ValidationError.field('frequency', 'only syncs have a frequency');
      }
      const { config, created, due } = await db.transaction(async (tx) => {
        const { row: config, inserted } = await repo.upsertFunctionConfig(tx, {
          environmentId,
          integrationId: row.id,
          name: definition.name,
          type: definition.type,
          frequencySeconds,
          autoStart: definition.type === 'sync' ? (input.autoStart ?? existing?.autoStart ?? definition.autoStart) : false,
        });
        // Records of this sync still waiting for the purge of an earlier disabling would otherwise
        // be purged after the new syncs wrote them again (an unchanged record is not rewritten).
        if (definition.type === 'sync')
          await deps.purges.finishForModels(tx, row.id, Object.keys(definition.models as Record<string, unknown>));
        const due = definition.type === 'sync' ? await repo.createSyncsForConfig(tx, config) : [];
        return { config, created: inserted, due: config.autoStart ? due : [] };
      });
      await deps.onSyncsDue(due);
      return { definition, config, created };
    },

    /** Disables a function: its schedules stop and the records of its models are removed (purged on the worker). */
    async disable(environmentId: string, key: string, name: string): Promise<void> {
      const row = await integration(environmentId, key);
      const definition = registry.find(row.provider, name);
      await db.transaction(async (tx) => {
        if (!(await repo.deleteFunctionConfig(tx, environmentId, row.id, name))) {
          throw new NotFoundError(`Function "${name}" is not enabled on integration "${key}"`);
        }
        if (definition?.type === 'sync') await deps.purges.forModels(tx, row.id, Object.keys(definition.models as Record<string, unknown>));
      });
      if (definition?.type === 'sync') await deps.purges.wake();
    },
  };
}
