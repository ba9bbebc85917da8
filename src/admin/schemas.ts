import { z } from 'zod';
import type { EnvironmentRow } from '../environments/repository.js';

export const accountName = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[\p{L}\p{N}][\p{L}\p{N} _.'&-]*$/u, "must start with a letter or digit and hold letters, digits, spaces or _ . ' & -");
export const environmentName = z
  .string()
  .min(1)
  .max(63)
  .regex(/^[a-z0-9][a-z0-9_-]*$/, 'must be lower-case letters, digits, _ or - (e.g. dev, prod)');

export const account = z
  .object({ id: z.uuid(), name: z.string(), created_at: z.iso.datetime(), updated_at: z.iso.datetime() })
  .meta({ id: 'AdminAccount' });

export const environment = z
  .object({
    id: z.uuid(),
    account_id: z.uuid(),
    name: z.string(),
    secret_key_hint: z.string().describe('First characters of the secret key, to tell keys apart'),
    secret_key_rotated_at: z.iso.datetime().nullable(),
    created_at: z.iso.datetime(),
    updated_at: z.iso.datetime(),
  })
  .meta({ id: 'AdminEnvironment' });

export const environmentWithKey = environment
  .extend({ secret_key: z.string().describe('The secret key. Shown only in this response; store it now.') })
  .meta({ id: 'AdminEnvironmentWithKey' });

export const toAccount = (a: { id: string; name: string; createdAt: Date; updatedAt: Date }): z.output<typeof account> => ({
  id: a.id,
  name: a.name,
  created_at: a.createdAt.toISOString(),
  updated_at: a.updatedAt.toISOString(),
});

export const toEnvironment = (e: EnvironmentRow): z.output<typeof environment> => ({
  id: e.id,
  account_id: e.accountId,
  name: e.name,
  secret_key_hint: e.secretKeyHint,
  secret_key_rotated_at: e.secretKeyRotatedAt?.toISOString() ?? null,
  created_at: e.createdAt.toISOString(),
  updated_at: e.updatedAt.toISOString(),
});
