import { randomBytes } from 'node:crypto';
import { sha256 } from '../lib/hash.js';

const PREFIX = 'terapi_sk_';

/** A new environment secret key: 256 random bits behind a recognisable prefix (secret scanners). */
export function generateSecretKey(): string {
  return PREFIX + randomBytes(32).toString('base64url');
}

/**
 * Keys are long random strings, so a plain SHA-256 is a sufficient one-way index: there is no
 * dictionary to attack, and lookups stay a single indexed equality.
 */
export function hashSecretKey(key: string): string {
  return sha256(key, 'hex');
}

export function secretKeyHint(key: string): string {
  return `${key.slice(0, PREFIX.length + 4)}…`;
}

/** Parses `Authorization: Bearer <key>`; anything else is undefined. */
export function bearerToken(header: string | undefined): string | undefined {
  if (!header) return undefined;
  const match = /^Bearer\s+(\S{1,512})\s*$/i.exec(header);
  return match?.[1];
}
