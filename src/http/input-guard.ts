import type { FastifyInstance } from 'fastify';
import { ValidationError } from '../lib/errors.js';

/**
 * JSON nesting accepted in a request. Stored JSON (metadata, params, configs) goes through
 * recursive serializers (JSON.stringify, the pg driver, jsonb) that overflow the stack thousands of
 * levels down; no real document needs more than a few dozen.
 */
export const MAX_JSON_DEPTH = 64;

// An unpaired UTF-16 surrogate: JSON may carry it as `\ud800`, but it is not a character, and
// PostgreSQL refuses it in jsonb (and would silently replace it in text).
const loneSurrogate = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

function whyUnstorable(s: string): string | undefined {
  if (s.includes('\u0000')) return 'contains a NUL character (\\u0000), which cannot be stored';
  if (loneSurrogate.test(s)) return 'contains an unpaired UTF-16 surrogate (e.g. \\ud800), which is not valid Unicode';
  return undefined;
}

const join = (path: string, key: string) => (path ? `${path}.${key}` : key);

/**
 * The first string or key of a parsed JSON value that PostgreSQL cannot store, or the first place
 * nested deeper than `maxDepth`, as `{ field, message }`. Iterative, so a hostile depth cannot
 * overflow the stack here either.
 */
export function findUnstorable(value: unknown, root: string, maxDepth = MAX_JSON_DEPTH): { field: string; message: string } | undefined {
  const stack: { value: unknown; path: string; depth: number }[] = [{ value, path: root, depth: 0 }];
  while (stack.length) {
    const { value: v, path, depth } = stack.pop()!;
    if (typeof v === 'string') {
      const why = whyUnstorable(v);
      if (why) return { field: path || 'body', message: why };
      continue;
    }
    if (v === null || typeof v !== 'object') continue;
    if (depth >= maxDepth) return { field: path || 'body', message: `is nested more than ${maxDepth} levels deep` };
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0; i--) stack.push({ value: v[i], path: join(path, String(i)), depth: depth + 1 });
      continue;
    }
    const entries = Object.entries(v as Record<string, unknown>);
    for (let i = entries.length - 1; i >= 0; i--) {
      const [key, child] = entries[i]!;
      const why = whyUnstorable(key);
      if (why) return { field: path || 'body', message: `has a key that ${why}` };
      stack.push({ value: child, path: join(path, key), depth: depth + 1 });
    }
  }
  return undefined;
}

/** A field path short enough to quote back (a hostile path can be as long as the body). */
const shortField = (field: string) => (field.length > 200 ? `${field.slice(0, 200)}…` : field);

/**
 * Refuses, before validation, any request whose parsed body or query carries a string the database
 * cannot store or a structure nested too deep: one check for every route, naming the field.
 */
export function registerInputGuard(app: FastifyInstance): void {
  app.addHook('preValidation', async (req) => {
    const sources: [unknown, string][] = [[req.query, 'query']];
    // Raw bodies (buffers, streams) are passed through untouched; only parsed documents are checked.
    if (
      req.body !== null &&
      typeof req.body === 'object' &&
      !Buffer.isBuffer(req.body) &&
      typeof (req.body as { pipe?: unknown }).pipe !== 'function'
    ) {
      sources.push([req.body, '']);
    }
    for (const [value, where] of sources) {
      const bad = findUnstorable(value, '');
      if (!bad) continue;
      const field = shortField(bad.field === 'body' && where ? where : bad.field);
      throw new ValidationError(`Invalid ${where || 'body'}: ${field}: ${bad.message}`, [{ field, message: bad.message }]);
    }
  });
}
