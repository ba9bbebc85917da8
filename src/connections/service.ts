import { randomUUID } from 'node:crypto';
import { verifyCredentials } from '../providers/verify.js';
import type { Db, DbOrTx } from '../db/client.js';
import { type NotificationHub, notifyChange } from '../db/notifications.js';
import type { EndUser } from '../db/schema/index.js';
import type { FunctionSchedules } from '../functions/service.js';
import type { IntegrationLookup } from '../integrations/service.js';
import { positionCursors } from '../lib/cursor.js';
import { FailedDependencyError, NotFoundError, ValidationError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { jsonBytes } from '../lib/schemas.js';
import type { Vault } from '../lib/vault.js';
import type { Catalog } from '../providers/catalog.js';
import type { RecordPurges } from '../records/purges.js';
import { credentialsContext, normalizeCredentials, type StoredCredentials, validateConnectionConfig } from './credentials.js';
import { recordEvent } from '../events/repository.js';
import type { ConnectionReader } from './reader.js';
import * as repo from './repository.js';
import { createFetchStamps } from './fetch-stamps.js';
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
  schedules: Pick<FunctionSchedules, 'createForConnection'>;
  /** A deleted connection's records are purged on the worker (the deleting transaction records the purge). */
  purges: Pick<RecordPurges, 'wake'>;
}) {
  const { db, vault, catalog, metadataLimitBytes } = deps;

  const notFound = (key: string, connectionId: string) => NotFoundError.connection(key, connectionId);

  const fetchStamps = createFetchStamps({ db, log: deps.log, delayMs: FETCH_STAMP_DELAY_MS });
  const revoker = createRevoker({ fetch: deps.fetch, vault, log: deps.log });

  /**
   * The one write of a connection's row, in one transaction: a new connection gets its
   * integration's syncs; new credentials (`auth`) are an `auth` webhook (creation or override), as
   * when the end user authorizes through Connect; every process's caches drop the row once it commits.
   */
  async function store(
    values: Parameters<typeof repo.upsertConnection>[1],
    auth?: { providerConfigKey: string; provider: string; endUser: EndUser | null; tags: Record<string, string> },
  ) {
    const row = await db.transaction(async (tx) => {
      const upserted = await repo.upsertConnection(tx, values);
      if (upserted.inserted) await deps.schedules.createForConnection(tx, upserted.id);
      if (auth) {
        await recordEvent(tx, {
          environmentId: values.environmentId,
          type: 'auth',
          operation: upserted.inserted ? 'creation' : 'override',
          success: true,
          providerConfigKey: auth.providerConfigKey,
          connectionId: values.connectionId,
          payload: { provider: auth.provider, authMode: values.credentialsType, endUser: auth.endUser, tags: auth.tags },
        });
      }
      await notifyChange(tx, 'conn', upserted.id);
      return upserted;
    });
    deps.hub.emitLocal('conn', row.id);
    return row;
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

  async function requireConnection(environmentId: string, key: string, connectionId: string) {
    const row = await repo.findConnection(db, environmentId, key, connectionId);
    if (!row) throw notFound(key, connectionId);
    return row;
  }

  return {
    lookup: {
      find: (environmentId: string, key: string, connectionId: string) => repo.findConnection(db, environmentId, key, connectionId),
      /** By internal id; `tx` reads inside a caller's transaction. */
      findById: (ids: number[], tx: DbOrTx = db) => repo.findConnectionsById(tx, ids),
    },

    /** Imports credentials for a connection; creates it or updates the existing one (as Nango does). */
    async upsert(environmentId: string, input: ConnectionInput): Promise<{ connection: ConnectionView; created: boolean }> {
      checkMetadata(input.metadata);
      if (input.connectionConfig && jsonBytes(input.connectionConfig) > CONFIG_LIMIT) {
        throw ValidationError.field('connection_config', `must be at most ${CONFIG_LIMIT} bytes of JSON`);
      }
      const { integration, provider } = await requireIntegration(environmentId, input.providerConfigKey, true);
      const connectionId = input.connectionId ?? randomUUID();
      const existing = input.connectionId ? await repo.findConnection(db, environmentId, input.providerConfigKey, connectionId) : undefined;

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

      if (input.verify && normalized && (provider.auth_mode === 'API_KEY' || provider.auth_mode === 'BASIC')) {
        const check = await verifyCredentials(
          deps.fetch,
          provider,
          integration.urlOverrides,
          { ...existing?.connectionConfig, ...input.connectionConfig },
          normalized.stored,
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
      const ids = { environmentId, integrationId: integration.id, connectionId };
      // Encrypt before the write: if encryption is unavailable, nothing is stored.
      const credentialsEnc = normalized ? vault.encryptJson(normalized.stored, credentialsContext(ids)) : undefined;
      const credentialsType = normalized?.stored.type ?? existing!.credentialsType;
      const row = await store(
        {
          ...ids,
          credentialsType,
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
        normalized
          ? {
              providerConfigKey: input.providerConfigKey,
              provider: provider.name,
              endUser: input.endUser ?? existing?.endUser ?? null,
              tags: input.tags ?? existing?.tags ?? {},
            }
          : undefined,
      );
      return { connection: await requireConnection(environmentId, input.providerConfigKey, connectionId), created: row.inserted };
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
      const created = await store(
        {
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
        { providerConfigKey: p.providerConfigKey, provider: p.provider, endUser: p.endUser, tags: p.tags },
      );
      return { connection: await requireConnection(p.environmentId, p.providerConfigKey, p.connectionId), created: created.inserted };
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
