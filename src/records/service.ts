import type { ConnectionReader } from '../connections/reader.js';
import type { RecordAction } from '../db/schema/index.js';
import type { Db } from '../db/client.js';
import type { FunctionRegistry } from '../functions/registry.js';
import { positionCursors } from '../lib/cursor.js';
import { NotFoundError, ValidationError } from '../lib/errors.js';
import type { Vault } from '../lib/vault.js';
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

const UPPER: Record<RecordAction, string> = { added: 'ADDED', updated: 'UPDATED', deleted: 'DELETED' };

/** Reads a model's records as a change feed (Nango-compatible `GET /records`). */
export type RecordLookup = ReturnType<typeof createRecordService>['lookup'];

export function createRecordService(deps: { db: Db; vault: Vault; reader: ConnectionReader; registry: FunctionRegistry }) {
  return {
    lookup: {
      /** Live records per model of each connection (`get(connectionPk)[model]`). */
      count: (connectionPks: readonly number[], models: readonly string[]) => repo.countRecords(deps.db, connectionPks, models),
    },

    /**
     * One page as ready JSON bytes: each record's stored JSON text is spliced in with its
     * `_nango_metadata`, so a page of 10,000 records is never parsed and re-serialized.
     */
    async list(environmentId: string, q: RecordListQuery): Promise<Buffer> {
      const conn = await deps.reader.get(environmentId, q.providerConfigKey, q.connectionId);
      if (!conn) throw NotFoundError.connection(q.providerConfigKey, q.connectionId);
      const known = deps.registry.forProvider(conn.provider).some((d) => d.type === 'sync' && q.model in d.models);
      if (!known) throw ValidationError.field('model', `"${q.model}" is not a model of any ${conn.provider} sync`);
      const cursors = positionCursors(deps.vault, feedScope(environmentId, conn.id, q.model));
      const after = q.cursor ? cursors.open(q.cursor) : 0;
      const rows = await repo.readRecords(deps.db, {
        connectionPk: conn.id,
        model: q.model,
        after,
        limit: q.limit + 1,
        modifiedAfter: q.modifiedAfter,
        actions: q.filter,
        ids: q.ids,
      });
      const page = rows.length > q.limit ? rows.slice(0, q.limit) : rows;
      const last = page.at(-1);
      const head = '{"records":[';
      const tail = `],"next_cursor":${rows.length > q.limit && last ? `"${cursors.seal(Number(last.cursor))}"` : 'null'}}`;
      // Each record's metadata (ASCII: it replaces the closing brace of the record's stored JSON
      // object, an id at least, and is followed by the comma before the next record), and the
      // exact size of the page in UTF-8.
      const metas = new Array<string>(page.length);
      let size = head.length + tail.length;
      for (let i = 0; i < page.length; i++) {
        const r = page[i]!;
        metas[i] =
          `,"_nango_metadata":{"first_seen_at":"${r.first_seen_at}","last_modified_at":"${r.modified_at}",` +
          `"last_action":"${UPPER[r.last_action]}","deleted_at":${r.deleted_at ? `"${r.deleted_at}"` : 'null'},` +
          `"cursor":"${cursors.seal(Number(r.cursor))}"}}${i < page.length - 1 ? ',' : ''}`;
        size += Buffer.byteLength(r.data) - 1 + metas[i]!.length;
      }
      // Written piece by piece into one buffer: a page built as one string costs more to build, to
      // measure and to encode for the socket than its records cost to read from the database.
      const out = Buffer.allocUnsafe(size);
      let at = out.write(head, 0, 'latin1');
      for (let i = 0; i < page.length; i++) {
        at += out.write(page[i]!.data, at, 'utf8') - 1;
        at += out.write(metas[i]!, at, 'latin1');
      }
      at += out.write(tail, at, 'latin1');
      if (at !== size) throw new Error(`records page: wrote ${at} of ${size} bytes`);
      return out;
    },
  };
}
