import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { StoredCredentials } from '../connections/credentials.js';
import { fastSerializerCompiler } from '../http/fast-serializer.js';
import { booleanQuery, connectionIdSchema, errors, providerConfigKey } from '../lib/schemas.js';
import type { TokenService } from './service.js';

export const authToken = z
  .object({
    type: z.string().describe('Token type (Bearer, ApiKey, Basic)'),
    access_token: z.string().describe('The access token value (for Basic, base64 of username:password)'),
    expires_at: z.iso.datetime().optional().describe('Token expiration time'),
    raw: z.record(z.string(), z.unknown()).describe('Full raw token response from the provider (without the refresh token)'),
  })
  .meta({ id: 'AuthToken' });

/**
 * The token a backend uses to call the provider. The refresh token is never handed out here:
 * a backend that refreshed on its own would break the rotation chain Terapi keeps.
 */
export function toAuthToken(c: StoredCredentials): z.output<typeof authToken> {
  switch (c.type) {
    case 'OAUTH2':
    case 'OAUTH2_CC': {
      const { refresh_token: _dropped, ...raw } = c.raw;
      return { type: 'Bearer', access_token: c.access_token ?? '', ...(c.expires_at && { expires_at: c.expires_at }), raw };
    }
    case 'API_KEY':
      return { type: 'ApiKey', access_token: c.api_key, raw: {} };
    case 'BASIC':
      return { type: 'Basic', access_token: Buffer.from(`${c.username}:${c.password}`).toString('base64'), raw: {} };
  }
}

/**
 * `toAuthToken` once per credentials object: the token service hands out the same object for a
 * cached connection row until the row changes (any write, refresh or TTL replaces it), so hot
 * calls skip rebuilding `raw` without the refresh token. The result is shared: nothing mutates it
 * (the route's serializer only reads it).
 */
const handouts = new WeakMap<StoredCredentials, z.output<typeof authToken>>();
function authTokenOf(c: StoredCredentials): z.output<typeof authToken> {
  let token = handouts.get(c);
  if (!token) {
    token = toAuthToken(c);
    handouts.set(c, token);
  }
  return token;
}

export const tokenRoutes: FastifyPluginAsyncZod<{ tokens: TokenService }> = async (app, { tokens }) => {
  for (const [prefix, operationId, tags] of [
    ['/auth/token', 'getAuthToken', ['Authentication']],
    ['/v1/auth/token', 'v1GetAuthToken', ['v1']],
  ] as const) {
    app.get(`${prefix}/:provider_config_key/:connection_id`, {
      serializerCompiler: fastSerializerCompiler,
      schema: {
        operationId,
        tags: [...tags],
        summary: 'Get Authentication Token',
        description:
          'Returns a token valid for at least the next few minutes: Terapi refreshes OAuth tokens that expire within the margin (default 15 minutes) first, once across all its processes. 424 when the user must re-authorize (`connection_needs_reauthorization`) or the configuration forbids the refresh (`refresh_misconfigured`, with the reason); 503 when the provider cannot refresh right now and the current token has expired.',
        params: z.object({ provider_config_key: providerConfigKey, connection_id: connectionIdSchema }),
        querystring: z.object({
          force_refresh: booleanQuery.optional().describe('Force a token refresh even if the current token is still valid'),
        }),
        response: { 200: authToken, ...errors(400, 401, 404, 424, 503) },
      },
      handler: (req) =>
        tokens
          .credentials(req.environment.id, req.params.provider_config_key, req.params.connection_id, req.query.force_refresh ?? false)
          .then(authTokenOf),
    });
  }
};
