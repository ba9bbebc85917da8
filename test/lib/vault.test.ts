import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { ServiceUnavailableError } from '../../src/lib/errors.js';
import { createVault, generateKeySpec, parseEncryptionKeys } from '../../src/lib/vault.js';

describe('vault', () => {
  const k1 = { id: 'k1', key: randomBytes(32) };
  const k2 = { id: 'k2', key: randomBytes(32) };

  it('round-trips and names its key in the ciphertext', () => {
    const v = createVault([k1]);
    const c = v.encrypt('hello secret', 'ctx');
    expect(c).toMatch(/^v1:k1:/);
    expect(c).not.toContain('hello');
    expect(v.decrypt(c, 'ctx')).toBe('hello secret');
    expect(v.encrypt('hello secret', 'ctx')).not.toBe(c);
  });

  it('rotates: the first key encrypts, every key decrypts', () => {
    const old = createVault([k1]).encrypt('before rotation', 'ctx');
    const rotated = createVault([k2, k1]);
    expect(rotated.decrypt(old, 'ctx')).toBe('before rotation');
    expect(rotated.keyIdOf(rotated.encrypt('after', 'ctx'))).toBe('k2');
  });

  it('refuses tampered ciphertext and a different context', () => {
    const v = createVault([k1]);
    const c = v.encrypt('value', 'connection:A');
    expect(() => v.decrypt(c, 'connection:B')).toThrow();
    const parts = c.split(':');
    const body = Buffer.from(parts[3]!, 'base64url');
    body[0]! ^= 1;
    expect(() => v.decrypt([...parts.slice(0, 3), body.toString('base64url')].join(':'), 'connection:A')).toThrow();
  });

  it('answers 503 when it has no key or lacks the key of a ciphertext', () => {
    expect(() => createVault([]).encrypt('x', 'c')).toThrow(ServiceUnavailableError);
    const c = createVault([k1]).encrypt('x', 'c');
    const err = (() => {
      try {
        createVault([k2]).decrypt(c, 'c');
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ServiceUnavailableError);
    expect((err as ServiceUnavailableError).code).toBe('encryption_key_missing');
  });

  it('parses TERAPI_ENCRYPTION_KEY lists and rejects bad keys', () => {
    const spec = `${generateKeySpec()},legacy:${randomBytes(32).toString('base64')}`;
    const keys = parseEncryptionKeys(spec);
    expect(keys).toHaveLength(2);
    expect(keys[1]!.id).toBe('legacy');
    expect(parseEncryptionKeys(randomBytes(32).toString('base64'))[0]!.id).toMatch(/^[0-9a-f]{8}$/);
    expect(() => parseEncryptionKeys('short')).toThrow(/32 bytes/);
    expect(() => parseEncryptionKeys(`a:${randomBytes(32).toString('base64')},a:${randomBytes(32).toString('base64')}`)).toThrow(
      /duplicate/,
    );
  });
});
