import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'terapi-signature';

/**
 * `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">` — one `v1` per active secret (two
 * during a rotation's overlap). Receivers recompute with their secret, compare in constant time,
 * and reject timestamps older than a few minutes (replays) and delivery ids already seen.
 */
export function signatureHeader(secrets: readonly string[], body: string, timestamp: number): string {
  const parts = [`t=${timestamp}`];
  for (const secret of secrets) parts.push(`v1=${createHmac('sha256', secret).update(`${timestamp}.${body}`).digest('hex')}`);
  return parts.join(',');
}

/** Verifies a signature header (what a receiver does); exported for tests and the README example. */
export function verifySignature(
  header: string,
  body: string,
  secret: string,
  opts: { toleranceSeconds?: number; now?: number } = {},
): boolean {
  const fields = header.split(',').map((p) => p.trim().split('=', 2) as [string, string]);
  const t = Number(fields.find(([k]) => k === 't')?.[1]);
  if (!Number.isFinite(t)) return false;
  const now = opts.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - t) > (opts.toleranceSeconds ?? 300)) return false;
  const expected = Buffer.from(createHmac('sha256', secret).update(`${t}.${body}`).digest('hex'));
  return fields.some(([k, v]) => k === 'v1' && v.length === expected.length && timingSafeEqual(Buffer.from(v), expected));
}
