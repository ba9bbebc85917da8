import type { Db } from '../db/client.js';
import { ConflictError, isUniqueViolation, NotFoundError } from '../lib/errors.js';
import type { KeyCache } from './key-cache.js';
import { generateSecretKey, hashSecretKey, secretKeyHint } from './keys.js';
import * as repo from './repository.js';

export type EnvironmentService = ReturnType<typeof createEnvironmentService>;

/** Accounts, environments and their secret keys (the admin API and first-start bootstrap). */
export function createEnvironmentService(deps: { db: Db; keyCache: KeyCache }) {
  const { db, keyCache } = deps;

  /** Commits a change to environments, then drops them from this process's cache too (NOTIFY may lag). */
  async function changeEnvironments<T>(
    work: (tx: Parameters<Parameters<Db['transaction']>[0]>[0]) => Promise<{ result: T; ids: string[] }>,
  ) {
    const { result, ids } = await db.transaction(async (tx) => {
      const out = await work(tx);
      await repo.notifyEnvironmentsChanged(tx, out.ids);
      return out;
    });
    for (const id of ids) keyCache.invalidateEnvironment(id);
    return result;
  }

  async function requireAccount(id: string) {
    const account = await repo.getAccount(db, id);
    if (!account) throw new NotFoundError(`Account ${id} not found`);
    return account;
  }

  return {
    createAccount: (name: string) => repo.insertAccount(db, name),
    listAccounts: () => repo.listAccounts(db),
    getAccount: requireAccount,

    async deleteAccount(id: string) {
      const done = await changeEnvironments(async (tx) => {
        const ids = await repo.deleteAccount(tx, id);
        return { result: ids !== undefined, ids: ids ?? [] };
      });
      if (!done) throw new NotFoundError(`Account ${id} not found`);
    },

    /** Creates an environment; the returned secret key is shown this once and never stored. */
    async createEnvironment(accountId: string, name: string, secretKey = generateSecretKey()) {
      await requireAccount(accountId);
      try {
        const env = await repo.insertEnvironment(db, {
          accountId,
          name,
          secretKeyHash: hashSecretKey(secretKey),
          secretKeyHint: secretKeyHint(secretKey),
        });
        return { env, secretKey };
      } catch (err) {
        if (isUniqueViolation(err))
          throw new ConflictError(`Account ${accountId} already has an environment named "${name}"`, 'duplicate_environment');
        throw err;
      }
    },

    listEnvironments: (accountId?: string) => repo.listEnvironments(db, accountId),

    async getEnvironment(id: string) {
      const env = await repo.getEnvironment(db, id);
      if (!env) throw new NotFoundError(`Environment ${id} not found`);
      return env;
    },

    async deleteEnvironment(id: string) {
      const done = await changeEnvironments(async (tx) => {
        const deleted = await repo.deleteEnvironment(tx, id);
        return { result: deleted, ids: deleted ? [id] : [] };
      });
      if (!done) throw new NotFoundError(`Environment ${id} not found`);
    },

    /** Replaces an environment's secret key; the old key stops working in every process at commit. */
    async rotateSecretKey(id: string, secretKey = generateSecretKey()) {
      const env = await changeEnvironments(async (tx) => {
        const row = await repo.setSecretKey(tx, id, hashSecretKey(secretKey), secretKeyHint(secretKey));
        return { result: row, ids: row ? [id] : [] };
      });
      if (!env) throw new NotFoundError(`Environment ${id} not found`);
      return { env, secretKey };
    },
  };
}
