import type { ConnectionReader } from '../connections/reader.js';
import type { RecordAction } from '../db/schema/index.js';
import type { Db } from '../db/client.js';
import type { FunctionRegistry } from '../functions/registry.js';
import { positionCursors } from '../lib/cursor.js';
import { NotFoundError, ValidationError } from '../lib/errors.js';
import type { Vault } from '../lib/vault.js';
import { renderRecordsPage } from './page.js';
import * as repo from './repository.js';

export type RecordService = ReturnType<typeof createRecordService>;

export interface RecordListQuery {
  providerConfigKey: string;
  connectionId: string;
  model: string;
  cursor?: string;
  limit: number;
  modifiedAfter?: Date;
  filter?: RecordAction[];
  ids?: string[];
}

/** A cursor is bound to its tenant and feed, so one from another connection or model is refused, not misapplied. */
const feedScope = (environmentId: string, connectionPk: number, model: string) => `records:${environmentId}:${connectionPk}:${model}`;

/** Reads a model's records as a change feed (Nango-compatible `GET /records`). */
export type RecordLookup = ReturnType<typeof createRecordService>['lookup'];

export function createRecordService(deps: { db: Db; vault: Vault; reader: ConnectionReader; registry: FunctionRegistry }) {
  return {
    lookup: {
      /** Live records per model of each connection (`get(connectionPk)[model]`). */
      count: (connectionPks: readonly number[], models: readonly string[]) => repo.countRecords(deps.db, connectionPks, models),
    },

    /** One page as ready JSON bytes (`renderRecordsPage`). */
    async list(environmentId: string, q: RecordListQuery): Promise<Buffer> {
      const conn = await deps.reader.get(environmentId, q.providerConfigKey, q.connectionId);
      if (!conn) throw NotFoundError.connection(q.providerConfigKey, q.connectionId);
      const known = deps.registry.forProvider(conn.provider).some((d) => d.type === 'sync' && q.model in d.models);
      if (!known) throw ValidationError.field('model', `"${q.model}" is not a model of any ${conn.provider} sync`);
      const cursors = positionCursors(deps.vault, feedScope(environmentId, conn.id, q.model));
      const after = q.cursor ? cursors.open(q.cursor) : 0;
      const copy = await repo.readRecords(deps.db, {
        connectionPk: conn.id,
        model: q.model,
        after,
        limit: q.limit + 1,
        modifiedAfter: q.modifiedAfter,
        actions: q.filter,
        ids: q.ids,
      });
      return renderRecordsPage(copy, q.limit, cursors);
    },
  };
}
