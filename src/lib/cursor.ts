import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { ServiceUnavailableError, ValidationError } from './errors.js';
import type { Vault, VaultKey } from './vault.js';

/**
 * Opaque keyset cursors. A cursor is encrypted and authenticated with a key derived from the vault
 * keys for its scope (the tenant and the query it pages, e.g. `records:<environment>:<connection>:<model>`),
 * so it reveals nothing (not the sequence values behind it, not how many rows the server holds)
 * and a cursor from another tenant or another query is refused with a 400. Each cursor names the
 * key id it was made with: after a key rotation, cursors made with an older key that is still
 * configured keep working.
 *
 * Two forms, both URL-safe (`<key id>.<base64url>`):
 * - positions (one non-negative integer: a records feed position, a connection's row id): one AES
 *   block, the position followed by eight zero bytes, under the scope's key. Anything else than a
 *   cursor made for this scope decrypts to a block whose last eight bytes are not all zero (one
 *   chance in 2^64). One block per cursor: a records page carries a cursor for every record, and
 *   an AES-GCM seal per record would cost more than serving the record.
 * - tuples (a few strings and numbers): AES-256-GCM, with the scope as additional data.
 */

const invalid = (field: string) => ValidationError.field(field, 'is not a cursor returned by this API for this query');
const unavailable = () =>
  new ServiceUnavailableError('encryption_unavailable', 'Cursors need an encryption key: configure TERAPI_ENCRYPTION_KEY on the server');

function keyFor(keys: VaultKey[], cursor: string, field: string): { key: Buffer; body: Buffer } {
  const dot = cursor.indexOf('.');
  if (dot <= 0) throw invalid(field);
  const key = keys.find((k) => k.id === cursor.slice(0, dot))?.key;
  if (!key) throw invalid(field);
  return { key, body: Buffer.from(cursor.slice(dot + 1), 'base64url') };
}

export interface PositionCursors {
  seal(position: number): string;
  /** `seal` of each position, encrypted together (a records page seals one per record). */
  sealMany(positions: ArrayLike<number>): string[];
  /** The position a cursor of this scope carries; a 400 naming `field` for anything else. */
  open(cursor: string, field?: string): number;
}

/** Cursors of one scope that carry a position; build once per page, seal once per row. */
export function positionCursors(vault: Vault, scope: string): PositionCursors {
  const keys = vault.deriveKeys(`cursor.position:${scope}`);
  const primary = keys[0];
  let cipher: ReturnType<typeof createCipheriv> | undefined;
  const block = Buffer.alloc(16);
  return {
    seal(position) {
      if (!primary) throw unavailable();
      if (!Number.isSafeInteger(position) || position < 0) throw new Error(`cursor position out of range: ${position}`);
      // ECB over exactly one block is the AES permutation itself; one cipher serves the whole page.
      if (!cipher) {
        cipher = createCipheriv('aes-256-ecb', primary.key, null);
        cipher.setAutoPadding(false);
      }
      block.writeBigUInt64BE(BigInt(position), 0);
      return `${primary.id}.${cipher.update(block).toString('base64url')}`;
    },
    sealMany(positions) {
      if (!primary) throw unavailable();
      const n = positions.length;
      const plain = Buffer.alloc(n * 16);
      for (let i = 0; i < n; i++) {
        const position = positions[i]!;
        if (!Number.isSafeInteger(position) || position < 0) throw new Error(`cursor position out of range: ${position}`);
        plain.writeUInt32BE(Math.floor(position / 2 ** 32), i * 16);
        plain.writeUInt32BE(position % 2 ** 32, i * 16 + 4);
      }
      // ECB encrypts each block alone: one call seals them all. Each 16-byte block is then laid out
      // on 18 bytes (two zero bytes after it), a multiple of 3, so one base64url encoding of the
      // whole holds each block's encoding at 24 characters apart: its first 22 characters are the
      // block's own (the 22nd carries the block's last 2 bits and 4 zero bits, as when encoded alone).
      const sealed = createCipheriv('aes-256-ecb', primary.key, null).setAutoPadding(false).update(plain);
      const spread = Buffer.alloc(n * 18);
      for (let i = 0; i < n; i++) sealed.copy(spread, i * 18, i * 16, i * 16 + 16);
      const text = spread.toString('base64url');
      const prefix = `${primary.id}.`;
      const out = new Array<string>(n);
      for (let i = 0; i < n; i++) out[i] = prefix + text.slice(i * 24, i * 24 + 22);
      return out;
    },
    open(cursor, field = 'cursor') {
      const { key, body } = keyFor(keys, cursor, field);
      if (body.length !== 16) throw invalid(field);
      const decipher = createDecipheriv('aes-256-ecb', key, null);
      decipher.setAutoPadding(false);
      const plain = decipher.update(body);
      if (plain.readBigUInt64BE(8) !== 0n) throw invalid(field);
      const position = plain.readBigUInt64BE(0);
      if (position > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(field);
      return Number(position);
    },
  };
}

type Shape = readonly ('string' | 'number')[];
type Values<T extends Shape> = { [K in keyof T]: T[K] extends 'number' ? number : string };

/** A cursor carrying a few values (AES-256-GCM, bound to `scope`). */
export function sealCursor(vault: Vault, scope: string, values: readonly (string | number)[]): string {
  const primary = vault.deriveKeys(`cursor.tuple:${scope}`)[0];
  if (!primary) throw unavailable();
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', primary.key, iv);
  cipher.setAAD(Buffer.from(scope));
  const body = Buffer.concat([iv, cipher.update(JSON.stringify(values), 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${primary.id}.${body.toString('base64url')}`;
}

/** The values of a cursor made by `sealCursor` for this scope, checked against `shape`; a 400 naming `field` otherwise. */
export function openCursor<T extends Shape>(vault: Vault, scope: string, cursor: string, shape: T, field = 'cursor'): Values<T> {
  const { key, body } = keyFor(vault.deriveKeys(`cursor.tuple:${scope}`), cursor, field);
  if (body.length < 12 + 16) throw invalid(field);
  let parsed: unknown;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, body.subarray(0, 12));
    decipher.setAAD(Buffer.from(scope));
    decipher.setAuthTag(body.subarray(body.length - 16));
    parsed = JSON.parse(Buffer.concat([decipher.update(body.subarray(12, body.length - 16)), decipher.final()]).toString('utf8'));
  } catch {
    throw invalid(field);
  }
  if (
    !Array.isArray(parsed) ||
    parsed.length !== shape.length ||
    parsed.some((v, i) => typeof v !== shape[i] || (typeof v === 'number' && !Number.isSafeInteger(v)))
  ) {
    throw invalid(field);
  }
  return parsed as never;
}
