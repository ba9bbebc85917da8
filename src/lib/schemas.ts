import { z } from 'zod';

/** Bounded primitives shared by every route schema. */

export const providerConfigKey = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, "must be letters, digits, '.', '_' or '-' (no spaces or slashes)")
  .describe('Your unique key for the integration (provider config key)');

export const connectionIdSchema = z
  .string()
  .min(1)
  .max(255)
  .regex(/^[A-Za-z0-9_.@:+=|~-]+$/, 'must be letters, digits or one of _ . @ : + = | ~ - (no spaces or slashes)')
  .describe("Your application's identifier for the connection");

export const providerName = z
  .string()
  .min(1)
  .max(64)
  .regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'must be a provider name such as github or google-drive');

export const jsonObject = z.record(z.string().max(255), z.unknown());

export const errorResponse = z
  .object({
    error: z.string().describe('Error code'),
    message: z.string().describe('Human-readable error message'),
    details: z
      .array(z.object({ field: z.string(), message: z.string() }))
      .optional()
      .describe('One entry per invalid field'),
  })
  .meta({ id: 'ErrorResponse' });

/** The error responses a route declares, by status code. */
export function errors<const S extends readonly number[]>(...statuses: S): Record<S[number], typeof errorResponse> {
  return Object.fromEntries(statuses.map((s) => [s, errorResponse])) as Record<S[number], typeof errorResponse>;
}

export const limitQuery = (max: number, dflt: number) =>
  z.coerce.number().int().min(1).max(max).default(dflt).describe(`Page size, 1 to ${max} (default ${dflt})`);

export const cursorQuery = z
  .string()
  .max(200)
  .regex(/^[A-Za-z0-9_.-]+$/, 'must be a cursor returned by a previous page')
  .optional()
  .describe('Opaque cursor from the previous page (`next_cursor`)');

export const booleanQuery = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

export const isoDate = (d: Date | null | undefined): string | null => (d ? d.toISOString() : null);

/** Serialized size of a JSON value in bytes (what the database and the wire will carry). */
export const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value ?? null));
