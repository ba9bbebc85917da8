import { randomUUID } from 'node:crypto';
import { verifyCredentials } from '../providers/verify.js';
import type { Db, DbOrTx } from '../db/client.js';
import { type NotificationHub, notifyChange } from '../db/notifications.js';
import type { EndUser } from '../db/schema/index.js';
import type { FunctionSchedules } from '../functions/service.js';
import type { IntegrationLookup } from '../integrations/service.js';
import { positionCursors } from '../lib/cursor.js';
import { AppError, FailedDependencyError, NotFoundError, ValidationError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { jsonBytes } from '../lib/schemas.js';
import type { Vault } from '../lib/vault.js';
import type { Catalog } from '../providers/catalog.js';
import type { Provider } from '../providers/schema.js';
import type { RecordPurges } from '../records/purges.js';
import { credentialsContext, normalizeCredentials, type StoredCredentials, validateConnectionConfig } from './credentials.js';
import type { ConnectionReader } from './reader.js';
import * as repo from './repository.js';
import { createFetchStamps } from './fetch-stamps.js';
import { createConnectionStore, type StoreItem } from './store.js';
import { createRevoker, revocationEndpoint } from './revocation.js';

export interface ConnectionInput {
  providerConfigKey: string;
  connectionId?: string;
  credentials?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  connectionConfig?: Record<string, unknown>;
  tags?: Record<string, string>;
  endUser?: EndUser;
  /** Check API-key and basic credentials with the provider before storing them. */
  verify?: boolean;
}

export interface ListQuery {
  providerConfigKey?: string;
  connectionId?: string;
  endUserId?: string;
  search?: string;
  limit: number;
  cursor?: string;
}

export type ConnectionView = repo.ConnectionWithIntegration;
export type ConnectionService = ReturnType<typeof createConnectionService>;

/** What other domains read of connections; they receive a narrowed copy from services.ts. */
export type ConnectionLookup = ConnectionService['lookup'];

/** One item of a bulk import: its position in the request and the connection it describes. */
export interface ImportEntry {
  index: number;
  input: ConnectionInput;
}

export type ImportOutcome =
  | { index: number; connectionId: string; providerConfigKey: string; status: 'created' | 'updated' }
  | { index: number; connectionId: string | null; providerConfigKey: string | null; status: 'error'; error: AppError };

type IntegrationRow = NonNullable<Awaited<ReturnType<IntegrationLookup['find']>>>;
interface Target {
  integration: IntegrationRow;
  provider: Provider;
}

const CONFIG_LIMIT = 16 * 1024;
/** How long `last_fetched_at` stamps wait to be written together. */
const FETCH_STAMP_DELAY_MS = 1000;

export function createConnectionService(deps: {
  db: Db;
  vault: Vault;
  catalog: Catalog;
  metadataLimitBytes: number;
  fetch: typeof fetch;
  reader: ConnectionReader;
  hub: NotificationHub;
  log: Logger;
  integrations: Pick<IntegrationLookup, 'find'>;
  /** A new connection gets the syncs enabled on its integration, in the transaction that creates it. */
  schedules: Pick<FunctionSchedules, 'createForConnections'>;
  /** A deleted connection's records are purged on the worker (the deleting transaction records the purge). */
  purges: Pick<RecordPurges, 'wake'>;
}) {
  const { db, vault, catalog, metadataLimitBytes } = deps;

  const notFound = (key: string, connectionId: string) => NotFoundError.connection(key, connectionId);

  const fetchStamps = createFetchStamps({ db, log: deps.log, delayMs: FETCH_STAMP_DELAY_MS });
  const revoker = createRevoker({ fetch: deps.fetch, vault, log: deps.log });

  const storeMany = createConnectionStore({ db, hub: deps.hub, schedules: deps.schedules });

  /** The stored row as readers see it (the integration facts are the caller's). */
  const view = (row: repo.ConnectionRow & { inserted: boolean }, target: Target): ConnectionView => {
    const { inserted: _inserted, ...rest } = row;
    return { ...rest, providerConfigKey: target.integration.uniqueKey, provider: target.integration.provider };
  };

  function checkSizes(input: ConnectionInput) {
    checkMetadata(input.metadata);
    if (input.connectionConfig && jsonBytes(input.connectionConfig) > CONFIG_LIMIT) {
      throw ValidationError.field('connection_config', `must be at most ${CONFIG_LIMIT} bytes of JSON`);
    }
  }

  /**
   * Whether checking an import needs the stored connection: to keep its credentials, to verify with
   * its config, or because the config alone would not be valid for a new connection (and may be
   * completed by the stored one). Otherwise the import is checked as a new connection, which the
   * stored one can only pass as well, and the auth event reads the stored fields from the write.
   */
  function needsExisting(input: ConnectionInput, { integration, provider }: Target): boolean {
    if (!input.credentials || input.verify) return true;
    try {
      validateConnectionConfig(
        provider,
        { ...input.connectionConfig },
        { apiBaseUrl: integration.urlOverrides.api_base_url ?? provider.api_base_url },
      );
      return false;
    } catch {
      return true;
    }
  }

  /** Validates and encrypts one import (throws a field-naming ValidationError); `existing` is the stored row, when it was needed. */
  function prepare(
    environmentId: string,
    input: ConnectionInput,
    connectionId: string,
    { integration, provider }: Target,
    existing: Pick<repo.ConnectionRow, 'connectionConfig' | 'credentialsType'> | undefined,
  ): StoreItem & { normalized: ReturnType<typeof normalizeCredentials> | undefined } {
    if (!input.credentials && !existing && provider.auth_mode !== 'OAUTH2_CC') {
      throw ValidationError.field('credentials', `required to create a ${provider.auth_mode} connection for "${provider.name}"`);
    }
    if (input.connectionConfig !== undefined || !existing) {
      const merged = { ...existing?.connectionConfig, ...input.connectionConfig };
      validateConnectionConfig(provider, merged, { apiBaseUrl: integration.urlOverrides.api_base_url ?? provider.api_base_url });
    }
    const normalized = input.credentials
      ? normalizeCredentials(provider, input.credentials)
      : !existing
        ? normalizeCredentials(provider, {})
        : undefined;
    const ids = { environmentId, integrationId: integration.id, connectionId };
    // Encrypt before the write: if encryption is unavailable, nothing is stored.
    const credentialsEnc = normalized ? vault.encryptJson(normalized.stored, credentialsContext(ids)) : undefined;
    return {
      normalized,
      values: {
        ...ids,
        credentialsType: normalized?.stored.type ?? existing!.credentialsType,
        credentialsEnc,
        credentialsExpiresAt: normalized ? normalized.expiresAt : undefined,
        refreshable: normalized?.refreshable,
        connectionConfig: input.connectionConfig,
        metadata: input.metadata,
        tags: input.tags,
        endUser: input.endUser,
        endUserId: input.endUser?.id,
      },
      // New credentials are an `auth` event; a metadata-only update of an existing connection is not
      // (a new connection always has credentials, if only empty OAUTH2_CC ones).
      auth: normalized ? { providerConfigKey: integration.uniqueKey, provider: provider.name } : undefined,
    };
  }

  function checkMetadata(metadata: Record<string, unknown> | undefined) {
    if (metadata && jsonBytes(metadata) > metadataLimitBytes) {
      throw ValidationError.field('metadata', `must be at most ${metadataLimitBytes} bytes of JSON`);
    }
  }

  async function requireIntegration(environmentId: string, key: string, asField: boolean) {
    const integration = await deps.integrations.find(environmentId, key);
    if (!integration) {
      if (asField) throw ValidationError.field('provider_config_key', `no integration "${key}" in this environment`);
      throw NotFoundError.integration(key);
    }
    const provider = catalog.get(integration.provider);
    if (!provider) throw new Error(`integration ${key} names provider ${integration.provider}, which is not in the catalog`);
    return { integration, provider };
  }

  return {
    lookup: {
      find: (environmentId: string, key: string, connectionId: string) => repo.findConnection(db, environmentId, key, connectionId),
      /** By internal id; `tx` reads inside a caller's transaction. */
      findById: (ids: number[], tx: DbOrTx = db) => repo.findConnectionsById(tx, ids),
    },

    /**
     * Imports credentials for a connection; creates it or updates the existing one (as Nango does).
     * Usually two statements: the integration, then one transaction writing the row, its syncs, the
     * auth event and the cache notification; the stored row is read first only when needed.
     */
    async upsert(environmentId: string, input: ConnectionInput): Promise<{ connection: ConnectionView; created: boolean }> {
      checkSizes(input);
      const target = await requireIntegration(environmentId, input.providerConfigKey, true);
      const connectionId = input.connectionId ?? randomUUID();
      const existing =
        input.connectionId && needsExisting(input, target)
          ? await repo.findConnection(db, environmentId, input.providerConfigKey, connectionId)
          : undefined;
      const item = prepare(environmentId, input, connectionId, target, existing);
      const { provider, integration } = target;
      if (input.verify && item.normalized && (provider.auth_mode === 'API_KEY' || provider.auth_mode === 'BASIC')) {
        const check = await verifyCredentials(
          deps.fetch,
          provider,
          integration.urlOverrides,
          { ...existing?.connectionConfig, ...input.connectionConfig },
          item.normalized.stored,
        );
        if (!check.ok && check.reason === 'invalid') {
          throw ValidationError.field('credentials', `${provider.display_name} rejected these credentials (HTTP ${check.status})`);
        }
        if (!check.ok) {
          throw new FailedDependencyError(
            'verification_failed',
            `${provider.display_name} could not be reached to verify the credentials (${check.status ?? 'network error'}); nothing was stored`,
          );
        }
      }
      const [row] = await storeMany([item], { events: true });
      return { connection: view(row!, target), created: row!.inserted };
    },

    /**
     * Imports a batch of connections (one bulk-import batch): each entry is checked as a single
     * import is, and an entry's error does not stop the others; the valid ones are written in one
     * transaction. `events` sends the `auth` webhooks a single import sends. Entries must name
     * distinct connections (the caller starts a new batch at a repeat). `verify` is refused: a bulk
     * import does not call the provider once per item.
     */
    async importBatch(environmentId: string, entries: readonly ImportEntry[], opts: { events: boolean }): Promise<ImportOutcome[]> {
      const targets = new Map<string, Promise<Target>>();
      const targetOf = (key: string) => {
        let t = targets.get(key);
        if (!t) {
          t = requireIntegration(environmentId, key, true);
          t.catch(() => undefined);
          targets.set(key, t);
        }
        return t;
      };
      const outcomes: ImportOutcome[] = new Array<ImportOutcome>(entries.length);
      const failed = (i: number, connectionId: string | null, err: unknown) => {
        if (!(err instanceof AppError) || err.statusCode >= 500) throw err;
        outcomes[i] = {
          index: entries[i]!.index,
          connectionId,
          providerConfigKey: entries[i]!.input.providerConfigKey,
          status: 'error',
          error: err,
        };
      };
      const checked: { i: number; connectionId: string; target: Target }[] = [];
      for (let i = 0; i < entries.length; i++) {
        const { input } = entries[i]!;
        const connectionId = input.connectionId ?? randomUUID();
        try {
          if (input.verify)
            throw ValidationError.field('verify', 'is not available in a bulk import; import with POST /connections to verify');
          checkSizes(input);
          checked.push({ i, connectionId, target: await targetOf(input.providerConfigKey) });
        } catch (err) {
          failed(i, connectionId, err);
        }
      }
      // The stored rows, for the entries that need them, in one query.
      const wanted = checked.filter((c) => entries[c.i]!.input.connectionId && needsExisting(entries[c.i]!.input, c.target));
      const stored = new Map(
        (
          await repo.findConnectionsByKeys(
            db,
            environmentId,
            wanted.map((c) => ({ integrationId: c.target.integration.id, connectionId: c.connectionId })),
          )
        ).map((r) => [`${r.integrationId}\u0000${r.connectionId}`, r]),
      );
      const items: { i: number; item: StoreItem; target: Target }[] = [];
      for (const c of checked) {
        try {
          const existing = stored.get(`${c.target.integration.id}\u0000${c.connectionId}`);
          items.push({ i: c.i, target: c.target, item: prepare(environmentId, entries[c.i]!.input, c.connectionId, c.target, existing) });
        } catch (err) {
          failed(c.i, c.connectionId, err);
        }
      }
      const written = async (group: typeof items) => {
        const rows = await storeMany(
          group.map((g) => g.item),
          opts,
        );
        group.forEach((g, k) => {
          outcomes[g.i] = {
            index: entries[g.i]!.index,
            connectionId: rows[k]!.connectionId,
            providerConfigKey: g.target.integration.uniqueKey,
            status: rows[k]!.inserted ? 'created' : 'updated',
          };
        });
      };
      try {
        await written(items);
      } catch (err) {
        // The batch failed as a whole (a row the database refused): write the items one by one, so
        // only the refused ones fail.
        deps.log.warn({ err, items: items.length }, 'bulk import batch failed; writing its items one by one');
        for (const one of items) {
          try {
            await written([one]);
          } catch (itemErr) {
            deps.log.warn({ err: itemErr, index: entries[one.i]!.index }, 'bulk import item could not be stored');
            failed(
              one.i,
              one.item.values.connectionId,
              new AppError(422, 'unstorable', 'the database refused this connection (see the server log for the reason)'),
            );
          }
        }
      }
      return outcomes;
    },

    /** A connection as readers see it (cached per process, invalidated by every write). */
    async get(environmentId: string, key: string, connectionId: string): Promise<ConnectionView> {
      const row = await deps.reader.get(environmentId, key, connectionId);
      if (!row) throw notFound(key, connectionId);
      return row;
    },

    /**
     * Stores credentials obtained by an authorization flow (OAuth callback, Connect page form):
     * creates or overrides the connection, clears any auth error, and records the `auth` event in
     * the same transaction.
     */
    async saveAuthorized(p: {
      environmentId: string;
      integrationId: number;
      providerConfigKey: string;
      provider: string;
      connectionId: string;
      stored: StoredCredentials;
      expiresAt: Date | null;
      refreshable: boolean;
      connectionConfig: Record<string, unknown>;
      endUser: EndUser;
      tags: Record<string, string>;
    }): Promise<{ connection: ConnectionView; created: boolean }> {
      const ids = { environmentId: p.environmentId, integrationId: p.integrationId, connectionId: p.connectionId };
      const credentialsEnc = vault.encryptJson(p.stored, credentialsContext(ids));
      const [row] = await storeMany(
        [
          {
            values: {
              ...ids,
              credentialsType: p.stored.type,
              credentialsEnc,
              credentialsExpiresAt: p.expiresAt,
              refreshable: p.refreshable,
              connectionConfig: p.connectionConfig,
              endUser: p.endUser,
              endUserId: p.endUser.id,
              tags: p.tags,
            },
            auth: { providerConfigKey: p.providerConfigKey, provider: p.provider },
          },
        ],
        { events: true },
      );
      const { inserted, ...rest } = row!;
      return { connection: { ...rest, providerConfigKey: p.providerConfigKey, provider: p.provider }, created: inserted };
    },

    /**
     * Stamps `last_fetched_at` (Nango's connection GET reports when credentials were last read).
     * Written behind the read: stamps are coalesced per connection and written together within a
     * second, so a busy token reader costs no write per request.
     */
    markFetched(connection: ConnectionView): ConnectionView {
      return { ...connection, lastFetchedAt: fetchStamps.mark(connection.id) };
    },

    /** Writes the pending `last_fetched_at` stamps now (shutdown, tests). */
    flushFetchStamps: fetchStamps.flush,

    async list(environmentId: string, q: ListQuery): Promise<{ items: ConnectionView[]; nextCursor: string | null }> {
      // Bound to the tenant and the filters: a cursor of another listing is refused.
      const cursors = positionCursors(
        vault,
        `connections:${environmentId}:${JSON.stringify([q.providerConfigKey, q.connectionId, q.endUserId, q.search])}`,
      );
      const afterId = q.cursor ? cursors.open(q.cursor) : undefined;
      const rows = await repo.listConnections(db, environmentId, {
        providerConfigKey: q.providerConfigKey,
        connectionId: q.connectionId,
        endUserId: q.endUserId,
        search: q.search,
        afterId,
        limit: q.limit + 1,
      });
      const items = rows.slice(0, q.limit);
      return { items, nextCursor: rows.length > q.limit ? cursors.seal(items[items.length - 1]!.id) : null };
    },

    /**
     * Deletes a connection, then revokes its grant at the provider where the catalog knows how (in
     * the background, best effort). Its records are unreachable at once and purged on the worker.
     */
    async delete(environmentId: string, key: string, connectionId: string): Promise<void> {
      const { integration, provider } = await requireIntegration(environmentId, key, false);
      const deleted = await db.transaction(async (tx) => {
        const row = await repo.deleteConnection(tx, environmentId, integration.id, connectionId);
        if (row) await notifyChange(tx, 'conn', row.id);
        return row;
      });
      if (!deleted) throw notFound(key, connectionId);
      deps.hub.emitLocal('conn', deleted.id);
      await deps.purges.wake();
      if (deleted.credentialsEnc && revocationEndpoint(provider, integration.urlOverrides)) {
        const credentialsEnc = deleted.credentialsEnc;
        const credentials = () =>
          vault.decryptJson<StoredCredentials>(
            credentialsEnc,
            credentialsContext({ environmentId, integrationId: integration.id, connectionId }),
          );
        revoker.start({ provider, integration, connectionConfig: deleted.connectionConfig, credentials, connectionId });
      }
    },

    /** Resolves when the revocations started so far have finished (shutdown, tests). */
    settled: revoker.settled,

    /**
     * Replaces or merges metadata on one or more connections of an integration, all or nothing:
     * an unknown connection id or a result over the size limit changes no row.
     */
    async writeMetadata(
      environmentId: string,
      key: string,
      connectionIds: string[],
      metadata: Record<string, unknown>,
      mode: 'replace' | 'merge',
    ) {
      checkMetadata(metadata);
      const { integration } = await requireIntegration(environmentId, key, false);
      const unique = [...new Set(connectionIds)];
      const written = await db.transaction(async (tx) => {
        const updated = await repo.writeMetadata(tx, environmentId, integration.id, unique, metadata, mode, metadataLimitBytes);
        if (updated.length !== unique.length) {
          const done = new Set(updated.map((u) => u.connectionId));
          const missing = unique.filter((id) => !done.has(id));
          // Tell "does not exist" from "would be too large": one cheap lookup, then roll back.
          const exists = await repo.findConnection(tx, environmentId, key, missing[0]!);
          if (!exists) throw notFound(key, missing[0]!);
          throw ValidationError.field('metadata', `merged metadata of "${missing[0]}" would exceed ${metadataLimitBytes} bytes of JSON`);
        }
        for (const u of updated) await notifyChange(tx, 'conn', u.id);
        return updated;
      });
      for (const u of written) deps.hub.emitLocal('conn', u.id);
      return written;
    },
  };
}
