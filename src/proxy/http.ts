import { Transform, type Readable } from 'node:stream';
import { AppError, ValidationError } from '../lib/errors.js';

/**
 * The HTTP plumbing of the proxy: which caller headers reach the provider, which provider headers
 * reach the caller, how the caller's path is joined to the provider's base URL without escaping
 * it, and the request body limit.
 */

/** Headers a caller prefixes to have them sent to the provider, as Nango's proxy does (the prefix is stripped). */
export const FORWARD_PREFIX = 'nango-proxy-';

// RFC 9110 §7.6.1: connection-specific headers, never passed on by a proxy (both directions).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

// Framing and routing are Terapi's to set on the provider request, whatever a prefixed header says.
const NEVER_FORWARDED = new Set([...HOP_BY_HOP, 'host', 'content-length', 'expect']);

/** The body's own description: the body passes untouched, so these stay true of it. */
const BODY_HEADERS = ['content-type', 'content-encoding', 'content-length'] as const;

/**
 * The headers sent to the provider: every `Nango-Proxy-<name>` header as `<name>`, and the body's
 * `Content-Type`, `Content-Encoding` and `Content-Length`. Nothing else of the caller's request
 * (its `Authorization` is the Terapi key) is passed on.
 */
export function forwardedHeaders(rawHeaders: readonly string[], hasBody: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const value = rawHeaders[i + 1]!;
    if (name.startsWith(FORWARD_PREFIX)) {
      const target = name.slice(FORWARD_PREFIX.length);
      if (target && !NEVER_FORWARDED.has(target)) out[target] = out[target] === undefined ? value : `${out[target]}, ${value}`;
    } else if (hasBody && (BODY_HEADERS as readonly string[]).includes(name)) {
      out[name] = value;
    }
  }
  return out;
}

/**
 * The provider's response headers for the caller: everything but hop-by-hop headers (and those the
 * provider's `Connection` header names) and CORS headers, which belong to whoever serves the caller.
 */
export function returnedHeaders(rawHeaders: readonly string[]): Record<string, string | string[]> {
  const connectionNamed = new Set<string>();
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    if (rawHeaders[i]!.toLowerCase() === 'connection')
      for (const token of rawHeaders[i + 1]!.split(',')) connectionNamed.add(token.trim().toLowerCase());
  }
  const out: Record<string, string | string[]> = {};
  for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    if (HOP_BY_HOP.has(name) || connectionNamed.has(name) || name.startsWith('access-control-')) continue;
    const value = rawHeaders[i + 1]!;
    const previous = out[name];
    if (previous === undefined) out[name] = value;
    else if (name === 'set-cookie') out[name] = Array.isArray(previous) ? [...previous, value] : [previous, value];
    else out[name] = `${previous as string}, ${value}`;
  }
  return out;
}

const badPath = (message: string) => ValidationError.field('path', message);

/**
 * Splits what follows `/proxy` in the request URL into the provider path and the raw query string
 * (passed on byte for byte), refusing anything that could leave the base URL: dot segments (also
 * percent-encoded), backslashes, a leading `//` and absolute URLs.
 */
export function splitEndpoint(rest: string): { path: string; query: string } {
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q);
  if (path !== '' && !path.startsWith('/')) throw badPath('must start with /');
  if (path.startsWith('//')) throw badPath('must not start with // (a host name)');
  if (/^\/[a-zA-Z][a-zA-Z0-9+.-]*:(\/|%2f)/i.test(path)) throw badPath('must be a path on the provider, not an absolute URL');
  if (/\\|%5c/i.test(path)) throw badPath('must not contain backslashes');
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u0020\u007f]/.test(rest)) throw badPath('must not contain spaces or control characters');
  for (const segment of path.split('/')) {
    const decoded = segment.replace(/%2e/gi, '.');
    if (decoded === '.' || decoded === '..') throw badPath('must not contain . or .. segments');
  }
  return { path: path || '/', query };
}

/**
 * The provider URL: the base URL's path followed by the caller's path, and the caller's query with
 * the credential's query parameters (API keys in the URL) put in place of any the caller sent under
 * the same names.
 */
export function providerUrl(baseUrl: string, path: string, query: string, credentialQuery: Record<string, string>): URL {
  const base = new URL(baseUrl);
  const basePath = base.pathname.replace(/\/+$/, '');
  let search = query;
  const names = Object.keys(credentialQuery);
  if (names.length) {
    const kept = query
      .replace(/^\?/, '')
      .split('&')
      .filter((pair) => {
        if (!pair) return false;
        const name = pair.split('=')[0]!;
        let decoded = name;
        try {
          decoded = decodeURIComponent(name.replace(/\+/g, ' '));
        } catch {
          // an undecodable name cannot be one of ours
        }
        return !names.includes(decoded);
      });
    const added = names.map((n) => `${encodeURIComponent(n)}=${encodeURIComponent(credentialQuery[n]!)}`);
    search = `?${[...kept, ...added].join('&')}`;
  }
  const url = new URL(`${base.origin}${basePath}${path}${search}`);
  // Belt and braces after splitEndpoint: whatever the path held, the URL stays under the base URL.
  if (url.origin !== base.origin || !url.pathname.startsWith(basePath)) throw badPath('leaves the provider base URL');
  return url;
}

export class PayloadTooLargeError extends AppError {
  constructor(limit: number) {
    super(413, 'payload_too_large', `The request body is larger than the proxy accepts (${limit} bytes)`);
  }
}

/** Passes a body through, failing with 413 once more than `limit` bytes went by. */
export function limitBody(body: Readable, limit: number): Transform {
  let seen = 0;
  const limiter = new Transform({
    transform(chunk: Buffer, _enc, done) {
      seen += chunk.length;
      if (seen > limit) return done(new PayloadTooLargeError(limit));
      done(null, chunk);
    },
  });
  body.on('error', (err) => limiter.destroy(err));
  return body.pipe(limiter);
}

/** Reads a whole (small, already size-checked) body into memory, so it can be sent again. */
export async function readBody(body: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of body) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
