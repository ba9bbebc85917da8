import { ValidationError } from './errors.js';

/**
 * Opaque keyset cursors: base64url of a small JSON tuple. A cursor only positions a query that is
 * still scoped by tenant, so a forged one can skip rows but never reveal another tenant's.
 */
export function encodeCursor(values: readonly (string | number)[]): string {
  return Buffer.from(JSON.stringify(values)).toString('base64url');
}

export function decodeCursor<T extends readonly ('string' | 'number')[]>(
  cursor: string,
  shape: T,
  field = 'cursor',
): { [K in keyof T]: T[K] extends 'number' ? number : string } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8'));
  } catch {
    throw ValidationError.field(field, 'is not a cursor returned by this API');
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== shape.length ||
    parsed.some((v, i) => typeof v !== shape[i] || (typeof v === 'number' && !Number.isSafeInteger(v)))
  ) {
    throw ValidationError.field(field, 'is not a cursor returned by this API');
  }
  return parsed as never;
}
