import { createCipheriv, createDecipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { ServiceUnavailableError, StartupError } from './errors.js';

/**
 * AES-256-GCM envelope for secrets at rest. Every ciphertext names the key that made it
 * (`v1:<keyId>:<iv>:<ciphertext+tag>`, base64url parts), so keys can be rotated: the first key
 * encrypts, every configured key decrypts. The optional `context` is bound as additional
 * authenticated data so a ciphertext copied into another row or column fails to decrypt.
 */
export interface Vault {
  readonly available: boolean;
  encrypt(plaintext: string, context: string): string;
  decrypt(ciphertext: string, context: string): string;
  encryptJson(value: unknown, context: string): string;
  decryptJson<T = unknown>(ciphertext: string, context: string): T;
  /** The key id a ciphertext was made with (to find rows that need re-encryption). */
  keyIdOf(ciphertext: string): string | undefined;
  /**
   * A key for one purpose derived from each configured key (HMAC-SHA256 of the purpose), the
   * encrypting key first, so the raw keys only ever encrypt secrets.
   */
  deriveKeys(purpose: string): VaultKey[];
}

export interface VaultKey {
  id: string;
  key: Buffer;
}

const KEY_ID = /^[A-Za-z0-9_-]{1,32}$/;

/**
 * Parses `TERAPI_ENCRYPTION_KEY`: comma-separated entries, each `id:base64key` or a bare base64 key
 * (its id is then derived from the key). Each key must decode to exactly 32 bytes.
 */
export function parseEncryptionKeys(spec: string): VaultKey[] {
  const keys = spec
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry, i) => {
      const colon = entry.indexOf(':');
      const id = colon > 0 ? entry.slice(0, colon) : undefined;
      const material = colon > 0 ? entry.slice(colon + 1) : entry;
      const key = Buffer.from(material, 'base64');
      if (key.length !== 32) {
        throw new StartupError(`TERAPI_ENCRYPTION_KEY: key #${i + 1} must be 32 bytes, base64-encoded (e.g. \`openssl rand -base64 32\`)`);
      }
      if (id !== undefined && !KEY_ID.test(id)) {
        throw new StartupError(`TERAPI_ENCRYPTION_KEY: key id of key #${i + 1} must be 1-32 letters, digits, _ or -`);
      }
      return { id: id ?? deriveKeyId(key), key };
    });
  if (keys.length === 0) throw new StartupError('TERAPI_ENCRYPTION_KEY: no key given');
  if (new Set(keys.map((k) => k.id)).size !== keys.length) throw new StartupError('TERAPI_ENCRYPTION_KEY: duplicate key ids');
  return keys;
}

export function deriveKeyId(key: Buffer): string {
  return createHash('sha256').update(key).digest('hex').slice(0, 8);
}

export function generateKeySpec(): string {
  const key = randomBytes(32);
  return `${deriveKeyId(key)}:${key.toString('base64')}`;
}

const unavailable = () =>
  new ServiceUnavailableError('encryption_unavailable', 'Secret encryption is unavailable: configure TERAPI_ENCRYPTION_KEY on the server');

export function createVault(keys: VaultKey[]): Vault {
  const byId = new Map(keys.map((k) => [k.id, k.key]));
  const primary = keys[0];

  const encrypt = (plaintext: string, context: string): string => {
    if (!primary) throw unavailable();
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', primary.key, iv);
    cipher.setAAD(Buffer.from(context));
    const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final(), cipher.getAuthTag()]);
    return `v1:${primary.id}:${iv.toString('base64url')}:${body.toString('base64url')}`;
  };

  const decrypt = (ciphertext: string, context: string): string => {
    const [version, keyId, ivPart, bodyPart] = ciphertext.split(':');
    if (version !== 'v1' || !keyId || !ivPart || !bodyPart) throw new Error('vault: malformed ciphertext');
    const key = byId.get(keyId);
    if (!key) {
      throw new ServiceUnavailableError(
        'encryption_key_missing',
        `A stored secret was encrypted with key "${keyId}", which is not in TERAPI_ENCRYPTION_KEY`,
      );
    }
    const body = Buffer.from(bodyPart, 'base64url');
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(ivPart, 'base64url'));
    decipher.setAAD(Buffer.from(context));
    decipher.setAuthTag(body.subarray(body.length - 16));
    return Buffer.concat([decipher.update(body.subarray(0, body.length - 16)), decipher.final()]).toString('utf8');
  };

  return {
    available: primary !== undefined,
    encrypt,
    decrypt,
    encryptJson: (value, context) => encrypt(JSON.stringify(value), context),
    decryptJson: <T>(ciphertext: string, context: string) => JSON.parse(decrypt(ciphertext, context)) as T,
    keyIdOf: (ciphertext) => ciphertext.split(':')[1],
    deriveKeys: (purpose) => keys.map((k) => ({ id: k.id, key: createHmac('sha256', k.key).update(purpose).digest() })),
  };
}
