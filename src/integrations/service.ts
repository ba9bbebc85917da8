import type { Db } from '../db/client.js';
import { type NotificationHub, notifyChange } from '../db/notifications.js';
import type { UrlOverrides } from '../db/schema/index.js';
import { ConflictError, isUniqueViolation, NotFoundError, ValidationError } from '../lib/errors.js';
import { jsonBytes } from '../lib/schemas.js';
import type { Vault } from '../lib/vault.js';
import { type Catalog, genericProviders } from '../providers/catalog.js';
import type { Provider } from '../providers/schema.js';
import type { RecordPurges } from '../records/purges.js';
import * as repo from './repository.js';

export interface IntegrationInput {
  uniqueKey: string;
  provider: string;
  displayName?: string | null;
  oauthClientId?: string | null;
  oauthClientSecret?: string | null;
  oauthScopes?: string[];
  params?: Record<string, unknown>;
  secrets?: Record<string, string>;
  urlOverrides?: UrlOverrides;
}
export type IntegrationPatch = Partial<Omit<IntegrationInput, 'provider'>>;

/** What routes map to their response shapes; never carries a secret value. */
export interface IntegrationView {
  uniqueKey: string;
  provider: string;
  displayName: string;
  oauthClientId: string | null;
  hasOauthClientSecret: boolean;
  oauthScopes: string[];
  params: Record<string, unknown>;
  secretNames: string[];
  urlOverrides: UrlOverrides;
  connectionCount: number;
  createdAt: Date;
  updatedAt: Date;
}

export type IntegrationService = ReturnType<typeof createIntegrationService>;

/**
 * What other domains read of integrations: the stored rows (with encrypted columns, for the token
 * and OAuth clients). They receive a narrowed copy from services.ts instead of importing the
 * repository.
 */
export type IntegrationLookup = IntegrationService['lookup'];

const PARAMS_LIMIT = 16 * 1024;
const SECRETS_LIMIT = 16 * 1024;
const secretContext = (environmentId: string) => `integration.secrets:${environmentId}`;
const clientSecretContext = (environmentId: string) => `integration.client_secret:${environmentId}`;

/** The integration's OAuth client secret in clear, for token requests only. */
export function decryptClientSecret(
  vault: Vault,
  integration: Pick<repo.IntegrationRow, 'environmentId' | 'oauthClientSecretEnc'>,
): string | undefined {
  return integration.oauthClientSecretEnc
    ? vault.decrypt(integration.oauthClientSecretEnc, clientSecretContext(integration.environmentId))
    : undefined;
}

export function createIntegrationService(deps: {
  db: Db;
  vault: Vault;
  catalog: Catalog;
  allowProviderUrlOverrides: boolean;
  /** The egress policy's `allowPrivateNetworks`: test and on-prem setups may use plain-http OAuth servers. */
  allowInsecureOAuthUrls?: boolean;
  hub: NotificationHub;
  /** The records of a deleted integration's connections are purged on the worker. */
  purges: Pick<RecordPurges, 'wake'>;
}) {
  const { db, vault, catalog } = deps;

  function requireProvider(name: string): Provider {
    const provider = catalog.get(name);
    if (!provider) throw ValidationError.field('provider', `unknown provider "${name}"; GET /providers lists the supported ones`);
    return provider;
  }

  /** Checks fields against the provider; returns the encrypted/plain column values to write. */
  function validateAndEncode(environmentId: string, provider: Provider, input: IntegrationPatch, existing?: repo.IntegrationRow) {
    const oauth = provider.auth_mode === 'OAUTH2' || provider.auth_mode === 'OAUTH2_CC';
    if (!oauth) {
      for (const field of ['oauthClientId', 'oauthClientSecret'] as const) {
        if (input[field]) {
          throw ValidationError.field(
            snake(field),
            `provider "${provider.name}" authenticates with ${provider.auth_mode} and takes no OAuth client`,
          );
        }
      }
      if (input.oauthScopes?.length) throw ValidationError.field('oauth_scopes', `provider "${provider.name}" has no OAuth scopes`);
    }
    const clientId = input.oauthClientId !== undefined ? input.oauthClientId : existing?.oauthClientId;
    const hasSecret = input.oauthClientSecret !== undefined ? Boolean(input.oauthClientSecret) : Boolean(existing?.oauthClientSecretEnc);
    if (hasSecret && !clientId) throw ValidationError.field('oauth_client_id', 'required when an OAuth client secret is set');

    if (input.params && jsonBytes(input.params) > PARAMS_LIMIT)
      throw ValidationError.field('params', `must be at most ${PARAMS_LIMIT} bytes of JSON`);
    if (input.secrets && jsonBytes(input.secrets) > SECRETS_LIMIT)
      throw ValidationError.field('secrets', `must be at most ${SECRETS_LIMIT} bytes of JSON`);

    // An update names the URLs it changes; the others stay as they were.
    const overrides: UrlOverrides = { ...existing?.urlOverrides, ...input.urlOverrides };
    const generic = genericProviders.has(provider.name);
    for (const key of Object.keys(overrides) as (keyof UrlOverrides)[]) {
      const allowed = generic || deps.allowProviderUrlOverrides || provider.overridable_urls?.includes(key);
      if (!allowed) {
        throw ValidationError.field(key, `provider "${provider.name}" does not allow overriding ${key} (it is fixed by the catalog)`);
      }
    }
    if (!deps.allowInsecureOAuthUrls) {
      // The token client refuses plain http (credentials in clear), so such an integration could
      // only fail later, in front of the end user; refuse it now. Revocation sends the client
      // secret and the refresh token: the same rule.
      for (const key of ['authorization_url', 'token_url', 'revocation_url'] as const) {
        const url = input.urlOverrides?.[key];
        if (url && !url.startsWith('https://')) {
          throw ValidationError.field(key, 'must be an https URL (plain http is allowed only when TERAPI_EGRESS_ALLOW_PRIVATE is set)');
        }
      }
    }
    if (generic) {
      const required: (keyof UrlOverrides)[] = provider.auth_mode === 'OAUTH2' ? ['authorization_url', 'token_url'] : ['token_url'];
      for (const key of required) {
        if (!overrides[key]) throw ValidationError.field(key, `required for the generic "${provider.name}" provider`);
      }
    }

    // Encrypt before anything is written: with no key the request fails (503) and nothing changes.
    const values: Partial<repo.NewIntegration> = {};
    if (input.displayName !== undefined) values.displayName = input.displayName;
    if (input.oauthClientId !== undefined) values.oauthClientId = input.oauthClientId;
    if (input.oauthClientSecret !== undefined) {
      values.oauthClientSecretEnc = input.oauthClientSecret
        ? vault.encrypt(input.oauthClientSecret, clientSecretContext(environmentId))
        : null;
    }
    if (input.oauthScopes !== undefined) values.oauthScopes = input.oauthScopes;
    if (input.params !== undefined) values.params = input.params;
    if (input.secrets !== undefined) {
      values.secretsEnc = Object.keys(input.secrets).length ? vault.encryptJson(input.secrets, secretContext(environmentId)) : null;
    }
    if (input.urlOverrides !== undefined) values.urlOverrides = overrides;
    return values;
  }

  function toView(environmentId: string, row: repo.IntegrationRow, connectionCount: number): IntegrationView {
    const secretNames = row.secretsEnc
      ? Object.keys(vault.decryptJson<Record<string, string>>(row.secretsEnc, secretContext(environmentId)))
      : [];
    const provider = catalog.get(row.provider);
    return {
      uniqueKey: row.uniqueKey,
      provider: row.provider,
      displayName: row.displayName ?? provider?.display_name ?? row.provider,
      oauthClientId: row.oauthClientId,
      hasOauthClientSecret: row.oauthClientSecretEnc !== null,
      oauthScopes: row.oauthScopes,
      params: row.params,
      secretNames,
      urlOverrides: row.urlOverrides,
      connectionCount,
      createdAt: row.createdAt,
      updatedAt: row.updatedAt,
    };
  }

  const duplicate = (key: string) =>
    new ConflictError(`An integration with provider_config_key "${key}" already exists in this environment`, 'duplicate_integration');

  return {
    async create(environmentId: string, input: IntegrationInput): Promise<IntegrationView> {
      const provider = requireProvider(input.provider);
      const values = validateAndEncode(environmentId, provider, input);
      try {
        const row = await repo.insertIntegration(db, { ...values, environmentId, uniqueKey: input.uniqueKey, provider: provider.name });
        return toView(environmentId, row, 0);
      } catch (err) {
        if (isUniqueViolation(err)) throw duplicate(input.uniqueKey);
        throw err;
      }
    },

    lookup: {
      find: (environmentId: string, uniqueKey: string) => repo.findIntegration(db, environmentId, uniqueKey),
      findById: (environmentId: string, id: number) => repo.findIntegrationById(db, environmentId, id),
      list: (environmentId: string) => repo.listIntegrationRows(db, environmentId),
    },

    /** Providers this environment has at least one integration of. */
    installedProviders: (environmentId: string) => repo.listInstalledProviders(db, environmentId),

    async list(environmentId: string): Promise<IntegrationView[]> {
      const rows = await repo.listIntegrations(db, environmentId);
      return rows.map((r) => toView(environmentId, r, r.connectionCount));
    },

    async get(environmentId: string, uniqueKey: string): Promise<IntegrationView> {
      const row = await repo.findIntegrationWithCount(db, environmentId, uniqueKey);
      if (!row) throw notFound(uniqueKey);
      return toView(environmentId, row, row.connectionCount);
    },

    async update(environmentId: string, uniqueKey: string, patch: IntegrationPatch): Promise<IntegrationView> {
      const existing = await repo.findIntegrationWithCount(db, environmentId, uniqueKey);
      if (!existing) throw notFound(uniqueKey);
      const values = validateAndEncode(environmentId, requireProvider(existing.provider), patch, existing);
      if (patch.uniqueKey !== undefined) values.uniqueKey = patch.uniqueKey;
      try {
        const row = await db.transaction(async (tx) => {
          const updated = await repo.updateIntegration(tx, environmentId, uniqueKey, values);
          // Cached connection reads are keyed by the integration key, which may have changed.
          if (updated) await notifyChange(tx, 'integration', updated.id);
          return updated;
        });
        if (!row) throw notFound(uniqueKey);
        deps.hub.emitLocal('integration', row.id);
        return toView(environmentId, row, existing.connectionCount);
      } catch (err) {
        if (isUniqueViolation(err)) throw duplicate(patch.uniqueKey ?? uniqueKey);
        throw err;
      }
    },

    async delete(environmentId: string, uniqueKey: string): Promise<void> {
      const deletedId = await db.transaction(async (tx) => {
        const id = await repo.deleteIntegration(tx, environmentId, uniqueKey);
        if (id !== undefined) await notifyChange(tx, 'integration', id);
        return id;
      });
      if (deletedId === undefined) throw notFound(uniqueKey);
      deps.hub.emitLocal('integration', deletedId);
      await deps.purges.wake();
    },
  };
}

const notFound = (uniqueKey: string) => NotFoundError.integration(uniqueKey);

const snake = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
