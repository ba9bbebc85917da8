import * as nodeCrypto from 'node:crypto';

type Encoding = 'hex' | 'base64url';
type OneShot = (algorithm: string, data: string | Uint8Array, encoding: Encoding) => string;

// Node ≥ 20.12 has the one-shot `crypto.hash` (no Hash object per call: ~0.3 µs instead of ~0.8 for
// a short string); engines allow 20.11, which only has createHash.
const oneShot = (nodeCrypto as unknown as { hash?: OneShot }).hash;

/** SHA-256 of a UTF-8 string or of bytes (key and token indexes, content hashes). */
export const sha256: (data: string | Uint8Array, encoding: Encoding) => string =
  typeof oneShot === 'function'
    ? (data, encoding) => oneShot('sha256', data, encoding)
    : (data, encoding) => nodeCrypto.createHash('sha256').update(data).digest(encoding);
