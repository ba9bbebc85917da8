import { z } from 'zod';
import { connectionIdSchema, cursorQuery, isoDate, jsonObject, limitQuery, providerConfigKey } from '../lib/schemas.js';
import type { ConnectionInput, ConnectionView } from './service.js';

export const tagsSchema = z
  .record(
    z
      .string()
      .min(1)
      .max(64)
      .regex(/^[A-Za-z0-9_.:-]+$/, 'tag keys are letters, digits, _ . : -'),
    z.string().max(255),
  )
  .refine((t) => Object.keys(t).length <= 20, 'at most 20 tags')
  .describe('Key/value labels (e.g. plan, region)');

export const endUserSchema = z
  .object({
    id: z.string().min(1).max(255),
    email: z.email().max(320).optional(),
    display_name: z.string().min(1).max(255).optional(),
    organization: z
      .object({ id: z.string().min(1).max(255), display_name: z.string().max(255).optional() })
      .strict()
      .optional(),
  })
  .strict()
  .describe('The end user of your product who owns this connection');

export const credentialsInput = z
  .record(z.string().max(64), z.unknown())
  .describe(
    'Credentials to import, by auth mode: OAUTH2 `{ access_token, refresh_token?, expires_at? | expires_in? }`, API_KEY `{ api_key }`, BASIC `{ username, password }`, OAUTH2_CC `{ client_id?, client_secret?, access_token?, expires_at? }`. `type` is optional.',
  );

export const connectionExtras = {
  verify: z
    .boolean()
    .optional()
    .describe(
      'Check API-key or basic credentials with the provider before storing them (400 if rejected, 424 if it cannot be reached). Off by default: imports trust the caller.',
    ),
  connection_config: jsonObject.optional().describe('Per-connection provider settings (e.g. subdomain, instance_url)'),
  tags: tagsSchema.optional(),
  end_user: endUserSchema.optional(),
};

export const createConnectionBody = z
  .object({
    connection_id: connectionIdSchema,
    provider_config_key: providerConfigKey,
    credentials: credentialsInput.optional(),
    metadata: jsonObject.optional().describe('Custom metadata to store with this connection'),
    ...connectionExtras,
  })
  .strict()
  .meta({ id: 'CreateConnectionRequest' });

/** Nango's import body (`POST /connections`): the connection id is generated when omitted. */
export const nangoImportBody = z.object({
  provider_config_key: providerConfigKey,
  connection_id: connectionIdSchema.optional(),
  credentials: credentialsInput.optional(),
  metadata: jsonObject.optional(),
  ...connectionExtras,
});

export const connection = z
  .object({
    id: z.string().describe('Unique connection identifier (set by your application)'),
    provider_config_key: z.string().describe('The integration provider config key'),
    provider: z.string().describe('The third-party provider name (e.g., github, salesforce)'),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
    metadata: z.record(z.string(), z.unknown()).describe('Custom metadata stored with this connection'),
    credentials: z
      .object({
        type: z.string().describe('Credential type (oauth2, oauth2_cc, api_key, basic)'),
        expires_at: z.iso.datetime().optional(),
      })
      .describe('Current credential state (no raw secrets returned)'),
    error: z
      .object({ type: z.string(), code: z.string(), message: z.string(), at: z.string() })
      .optional()
      .describe('Present when the connection needs attention, e.g. its user must re-authorize (refresh_revoked)'),
  })
  .meta({ id: 'Connection' });

export const connectionList = z
  .object({
    connections: z.array(connection),
    next_cursor: z.string().nullable().describe('Pass as `cursor` to get the next page; null on the last page'),
  })
  .meta({ id: 'ConnectionListResponse' });

export const connectionParams = z.object({ connection_id: connectionIdSchema });
export const keyQuery = z.object({ provider_config_key: providerConfigKey });

export const listQuery = z.object({
  provider_config_key: providerConfigKey.optional().describe('Filter connections by integration provider config key'),
  connection_id: connectionIdSchema.optional().describe('Filter by a specific connection ID'),
  end_user_id: z.string().min(1).max(255).optional().describe('Filter by the end user that owns the connections'),
  search: z.string().min(1).max(255).optional().describe('Substring of the connection ID'),
  limit: limitQuery(1000, 100),
  cursor: cursorQuery,
});

export function toConnection(c: ConnectionView): z.output<typeof connection> {
  return {
    id: c.connectionId,
    provider_config_key: c.providerConfigKey,
    provider: c.provider,
    created_at: isoDate(c.createdAt)!,
    updated_at: isoDate(c.updatedAt)!,
    metadata: c.metadata,
    credentials: {
      type: c.credentialsType.toLowerCase(),
      ...(c.credentialsExpiresAt && { expires_at: c.credentialsExpiresAt.toISOString() }),
    },
    ...(c.error && { error: c.error }),
  };
}

/** The import body of both API families, as the service takes it. */
export function toConnectionInput(b: {
  provider_config_key: string;
  connection_id?: string;
  credentials?: Record<string, unknown>;
  metadata?: Record<string, unknown>;
  connection_config?: Record<string, unknown>;
  tags?: Record<string, string>;
  end_user?: ConnectionInput['endUser'];
  verify?: boolean;
}): ConnectionInput {
  return {
    providerConfigKey: b.provider_config_key,
    connectionId: b.connection_id,
    credentials: b.credentials,
    metadata: b.metadata,
    connectionConfig: b.connection_config,
    tags: b.tags,
    endUser: b.end_user,
    verify: b.verify,
  };
}
