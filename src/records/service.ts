import type { ConnectionReader } from '../connections/reader.js';
import type { RecordAction } from '../db/schema/index.js';
import type { Db } from '../db/client.js';
import type { FunctionRegistry } from '../functions/registry.js';
import { decodeCursor, encodeCursor } from '../lib/cursor.js';
import { NotFoundError, ValidationError } from '../lib/errors.js';
import { sha256 } from '../lib/hash.js';
import { readRecords } from './repository.js';

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

/** A cursor names its feed, so one from another connection or model is refused, not misapplied. */
function feedTag(connectionPk: number, model: string): string {
  return sha256(`${connectionPk}\u0000${model}`, 'base64url').slice(0, 10);
}

const UPPER: Record<RecordAction, string> = { added: 'ADDED', updated: 'UPDATED', deleted: 'DELETED' };

/** Reads a model's records as a change feed (Nango-compatible `GET /records`). */
export function createRecordService(deps: { db: Db; reader: ConnectionReader; registry: FunctionRegistry }) {
  return {
    /**
     * One page as a ready JSON string: each record's stored JSON text is spliced in with its
     * `_nango_metadata`, so a page of 10,000 records is never parsed and re-serialized.
     */
    async list(environmentId: string, q: RecordListQuery): Promise<string> {
      const conn = await deps.reader.get(environmentId, q.providerConfigKey, q.connectionId);
      if (!conn) throw new NotFoundError(`Connection "${q.connectionId}" not found for integration "${q.providerConfigKey}"`);
      const known = deps.registry.forProvider(conn.provider).some((d) => d.type === 'sync' && q.model in d.models);
      if (!known) throw ValidationError.field('model', `"${q.model}" is not a model of any ${conn.provider} sync`);
      const tag = feedTag(conn.id, q.model);
      let after = 0;
      if (q.cursor) {
        const [position, cursorTag] = decodeCursor(q.cursor, ['number', 'string'] as const);
        if (cursorTag !== tag) throw ValidationError.field('cursor', 'belongs to another connection or model');
        after = position;
      }
      const rows = await readRecords(deps.db, {
        connectionPk: conn.id,
        model: q.model,
        after,
        limit: q.limit + 1,
        modifiedAfter: q.modifiedAfter,
        actions: q.filter,
        ids: q.ids,
      });
      const page = rows.length > q.limit ? rows.slice(0, q.limit) : rows;
      const parts: string[] = new Array(page.length);
      for (let i = 0; i < page.length; i++) {
        const r = page[i]!;
        const cursor = encodeCursor([Number(r.cursor), tag]);
        const meta =
          `"_nango_metadata":{"first_seen_at":"${r.first_seen_at}","last_modified_at":"${r.modified_at}",` +
          `"last_action":"${UPPER[r.last_action]}","deleted_at":${r.deleted_at ? `"${r.deleted_at}"` : 'null'},"cursor":"${cursor}"}`;
        const data = r.data;
        parts[i] = data.length > 2 ? `${data.slice(0, -1)},${meta}}` : `{${meta}}`;
      }
      const last = page.at(-1);
      const next = rows.length > q.limit && last ? `"${encodeCursor([Number(last.cursor), tag])}"` : 'null';
      return `{"records":[${parts.join(',')}],"next_cursor":${next}}`;
    },
  };
}
