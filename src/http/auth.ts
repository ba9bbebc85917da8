import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { KeyCache } from '../environments/key-cache.js';
import { bearerToken, hashSecretKey } from '../environments/keys.js';
import { AppError, ForbiddenError, UnauthorizedError } from '../lib/errors.js';

export interface AuthEnvironment {
  id: string;
  accountId: string;
  name: string;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** The environment whose secret key authenticated this request (environment routes only). */
    environment: AuthEnvironment;
  }
}

/** onRequest hook for environment routes: `Authorization: Bearer <environment secret key>`. */
export function environmentAuth(keyCache: KeyCache) {
  return async (req: FastifyRequest, _reply: FastifyReply) => {
    const token = bearerToken(req.headers.authorization);
    if (!token) throw new UnauthorizedError();
    const env = await keyCache.resolve(hashSecretKey(token));
    if (!env) throw new UnauthorizedError('Invalid secret key');
    req.environment = { id: env.id, accountId: env.accountId, name: env.name };
  };
}

/** onRequest hook for /admin routes: `Authorization: Bearer <TERAPI_ADMIN_KEY>`. */
export function adminAuth(adminKey: string | undefined, keyCache: KeyCache) {
  const adminDigest = adminKey ? createHash('sha256').update(adminKey).digest() : undefined;
  return async (req: FastifyRequest, _reply: FastifyReply) => {
    const token = bearerToken(req.headers.authorization);
    if (!token) throw new UnauthorizedError('Missing admin key: send `Authorization: Bearer <TERAPI_ADMIN_KEY>`');
    // Compare digests so the comparison is constant-time whatever the token's length.
    if (adminDigest && timingSafeEqual(adminDigest, createHash('sha256').update(token).digest())) return;
    if (await keyCache.resolve(hashSecretKey(token))) {
      throw new ForbiddenError('Environment secret keys cannot use the admin API; use TERAPI_ADMIN_KEY');
    }
    if (!adminDigest) throw new AppError(403, 'admin_disabled', 'The admin API is disabled: set TERAPI_ADMIN_KEY on the server');
    throw new UnauthorizedError('Invalid admin key');
  };
}
