import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { asc } from 'drizzle-orm';
import type { Db } from '../db/client.js';
import { environments } from '../db/schema/index.js';
import { hashSecretKey } from './keys.js';
import { findEnvironmentByKeyHash } from './repository.js';
import type { EnvironmentService } from './service.js';

export interface BootstrapResult {
  environmentId: string;
  /** The key to print, when this process knows it; undefined after an operator rotated it. */
  secretKey?: string;
  source: 'TERAPI_SECRET_KEY' | 'generated' | 'data directory' | 'unknown';
}

/**
 * Makes sure a fresh install has one account and one environment to call the API with. The
 * default environment is the oldest one. `TERAPI_SECRET_KEY`, when set, is that environment's key
 * (so operators can pin it); otherwise a key is generated once, and in embedded mode kept in the
 * data directory (mode 0600) so later starts can print it again.
 */
export async function bootstrapDefaultEnvironment(deps: {
  db: Db;
  environments: EnvironmentService;
  configuredKey?: string;
  /** Where to keep a generated key; undefined when the database is external. */
  keyFileDir?: string;
}): Promise<BootstrapResult> {
  const { db, configuredKey, keyFileDir } = deps;
  const keyFile = keyFileDir ? path.join(keyFileDir, 'secret-key') : undefined;
  const [first] = await db
    .select({ id: environments.id })
    .from(environments)
    .orderBy(asc(environments.createdAt), asc(environments.id))
    .limit(1);

  if (!first) {
    const account = await deps.environments.createAccount('default');
    const { env, secretKey } = await deps.environments.createEnvironment(account.id, 'dev', configuredKey);
    if (!configuredKey && keyFile) await writeFile(keyFile, `${secretKey}\n`, { mode: 0o600 });
    return { environmentId: env.id, secretKey, source: configuredKey ? 'TERAPI_SECRET_KEY' : 'generated' };
  }

  if (configuredKey) {
    const owner = await findEnvironmentByKeyHash(db, hashSecretKey(configuredKey));
    if (!owner) await deps.environments.rotateSecretKey(first.id, configuredKey);
    return { environmentId: owner?.id ?? first.id, secretKey: configuredKey, source: 'TERAPI_SECRET_KEY' };
  }

  if (keyFile) {
    const stored = (await readFile(keyFile, 'utf8').catch(() => '')).trim();
    if (stored) {
      const owner = await findEnvironmentByKeyHash(db, hashSecretKey(stored));
      if (owner) return { environmentId: owner.id, secretKey: stored, source: 'data directory' };
    }
  }
  return { environmentId: first.id, source: 'unknown' };
}
