import { randomBytes } from 'node:crypto';
import { sha256 } from '../lib/hash.js';
import type { Db } from '../db/client.js';
import type { EndUser, IntegrationDefaults } from '../db/schema/index.js';
import { validateConnectionConfig } from '../connections/credentials.js';
import type { ConnectionLookup } from '../connections/service.js';
import type { IntegrationLookup } from '../integrations/service.js';
import { firstInvalidField, NotFoundError, UnauthorizedError, ValidationError } from '../lib/errors.js';
import type { Catalog } from '../providers/catalog.js';
import * as repo from './repository.js';

export interface ConnectSessionInput {
  endUser: EndUser & { tags?: Record<string, string> };
  organization?: { id: string; display_name?: string };
  allowedIntegrations?: string[];
  integrationsConfigDefaults?: Record<string, IntegrationDefaults>;
  tags?: Record<string, string>;
  redirectUrl?: string;
  allowedOrigin?: string;
}

export type ConnectSession = repo.ConnectSessionRow;
export type ConnectSessionService = ReturnType<typeof createConnectSessionService>;

const TOKEN_PREFIX = 'terapi_cs_';
export const hashSessionToken = (token: string) => sha256(token, 'hex');

/**
 * Connect sessions: short-lived tokens that let one end user connect accounts on the Connect page.
 * A session stays usable until it expires (as Nango's do): each completed flow adds a connection.
 */
export function createConnectSessionService(deps: {
  db: Db;
  ttlSeconds: number;
  serverUrl: string;
  catalog: Catalog;
  connections: Pick<ConnectionLookup, 'find'>;
  integrations: Pick<IntegrationLookup, 'list'>;
}) {
  const { db } = deps;

  async function checkIntegrations(environmentId: string, input: ConnectSessionInput) {
    const existing = new Map((await deps.integrations.list(environmentId)).map((i) => [i.uniqueKey, i]));
    input.allowedIntegrations?.forEach((k, i) => {
      if (!existing.has(k)) throw ValidationError.field(`allowed_integrations[${i}]`, `no integration "${k}" in this environment`);
    });
    for (const [key, defaults] of Object.entries(input.integrationsConfigDefaults ?? {})) {
      const integration = existing.get(key);
      if (!integration) throw ValidationError.field(`integrations_config_defaults.${key}`, `no integration "${key}" in this environment`);
      const provider = deps.catalog.get(integration.provider);
      if (!provider || !defaults.connection_config) continue;
      try {
        // Defaults may leave fields for the user to type on the Connect page: only check what is given.
        validateConnectionConfig(provider, defaults.connection_config, { filledLater: Object.keys(provider.connection_config ?? {}) });
      } catch (err) {
        const invalid = firstInvalidField(err);
        if (!invalid) throw err;
        const { field, message } = invalid;
        throw ValidationError.field(`integrations_config_defaults.${key}.${field}`, message);
      }
    }
  }

  async function create(environmentId: string, input: ConnectSessionInput, reconnectConnectionId?: number) {
    await checkIntegrations(environmentId, input);
    const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
    const expiresAt = new Date(Date.now() + deps.ttlSeconds * 1000);
    const allowedOrigin = input.allowedOrigin ?? (input.redirectUrl ? new URL(input.redirectUrl).origin : undefined);
    const row = await repo.insertConnectSession(db, {
      environmentId,
      tokenHash: hashSessionToken(token),
      endUser: input.endUser,
      endUserId: input.endUser.id,
      organization: input.organization,
      allowedIntegrations: input.allowedIntegrations,
      integrationsConfigDefaults: input.integrationsConfigDefaults ?? {},
      tags: input.tags ?? {},
      redirectUrl: input.redirectUrl,
      allowedOrigin,
      reconnectConnectionId,
      expiresAt,
    });
    return { session: row, token, connectLink: `${deps.serverUrl}/connect?session_token=${token}`, expiresAt };
  }

  return {
    create: (environmentId: string, input: ConnectSessionInput) => create(environmentId, input),

    /** A session that re-authorizes one existing connection (clears its auth error on success). */
    async reconnect(
      environmentId: string,
      input: Omit<ConnectSessionInput, 'allowedIntegrations' | 'endUser'> & {
        connectionId: string;
        providerConfigKey: string;
        endUser?: ConnectSessionInput['endUser'];
      },
    ) {
      const connection = await deps.connections.find(environmentId, input.providerConfigKey, input.connectionId);
      if (!connection) throw NotFoundError.connection(input.providerConfigKey, input.connectionId);
      const endUser = input.endUser ?? connection.endUser ?? { id: connection.connectionId };
      return create(environmentId, { ...input, endUser, allowedIntegrations: [input.providerConfigKey] }, connection.id);
    },

    /** The live session a token names; 401 when it is unknown or expired. */
    async authenticate(token: string | undefined): Promise<ConnectSession> {
      if (!token || !token.startsWith(TOKEN_PREFIX)) throw new UnauthorizedError('Missing or invalid connect session token');
      const session = await repo.findLiveSession(db, hashSessionToken(token));
      if (!session) throw new UnauthorizedError('The connect session is unknown or has expired');
      return session;
    },

    delete: (session: ConnectSession) => repo.deleteConnectSession(db, session.id),

    /** By id, expired or not: an OAuth callback can complete after its session ended. */
    findById: (id: string) => repo.findSessionById(db, id),

    deleteExpired: () => repo.deleteExpiredConnectSessions(db),

    /** Integrations the session may connect, in creation order. */
    async allowedIntegrations(session: ConnectSession) {
      const all = await deps.integrations.list(session.environmentId);
      return session.allowedIntegrations ? all.filter((i) => session.allowedIntegrations!.includes(i.uniqueKey)) : all;
    },
  };
}
