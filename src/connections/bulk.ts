import { StringDecoder } from 'node:string_decoder';
import type { z } from 'zod';
import { findUnstorable } from '../http/input-guard.js';
import { AppError, type FieldIssue, PayloadTooLargeError, ValidationError } from '../lib/errors.js';
import type { ConnectionInput, ImportEntry, ImportOutcome } from './service.js';

/** Bounds of one bulk-import request. */
export interface ImportLimits {
  /** Bytes of the body (either format). */
  maxBytes: number;
  /** Items of an NDJSON body (read one line at a time). */
  maxLines: number;
  /** Items of a JSON array body (parsed whole, so fewer). */
  maxArrayItems: number;
  /** Items written per transaction. */
  batchSize: number;
}

export const IMPORT_LIMITS = { maxLines: 100_000, maxArrayItems: 10_000, batchSize: 500 } as const;

/** One item of the body as read: its position and its parsed value, or why it could not be parsed. */
export type RawItem = { index: number; value: unknown } | { index: number; error: AppError };

export interface ImportSummary {
  created: number;
  updated: number;
  failed: number;
  results: ImportOutcome[];
}

const tooLarge = (limits: ImportLimits, imported: number) =>
  new PayloadTooLargeError(
    `The import body is larger than ${limits.maxBytes} bytes` +
      (imported ? `; the first ${imported} items were imported, send the rest in another request` : ''),
  );

/**
 * The items of an NDJSON body (one JSON value per line; blank lines are not items), parsed one
 * line at a time as the body arrives, so a large import is never held whole. `imported` tells the
 * 413 message how many items were already written when a body without a length turns out too large.
 */
export async function* ndjsonItems(
  body: AsyncIterable<Buffer | string>,
  limits: ImportLimits,
  imported: () => number,
): AsyncGenerator<RawItem> {
  const decoder = new StringDecoder('utf8');
  let bytes = 0;
  let rest = '';
  let index = 0;
  const item = (line: string): RawItem => {
    if (index >= limits.maxLines) {
      throw new PayloadTooLargeError(
        `An NDJSON import holds at most ${limits.maxLines} items; the first ${imported()} were imported, send the rest in another request`,
      );
    }
    const at = index++;
    try {
      return { index: at, value: JSON.parse(line) as unknown };
    } catch (err) {
      return { index: at, error: new AppError(400, 'invalid_json', `line ${at + 1} is not JSON: ${(err as Error).message}`) };
    }
  };
  for await (const chunk of body) {
    bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    if (bytes > limits.maxBytes) throw tooLarge(limits, imported());
    rest += typeof chunk === 'string' ? chunk : decoder.write(chunk);
    let start = 0;
    for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n', start)) {
      const line = rest.slice(start, nl);
      start = nl + 1;
      if (line.trim()) yield item(line);
    }
    rest = rest.slice(start);
  }
  rest += decoder.end();
  if (rest.trim()) yield item(rest);
}

/** The items of a JSON array body (read whole: it is bounded by `maxArrayItems`). */
export async function jsonArrayItems(body: AsyncIterable<Buffer | string>, limits: ImportLimits): Promise<RawItem[]> {
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of body) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    bytes += buf.length;
    if (bytes > limits.maxBytes) throw tooLarge(limits, 0);
    chunks.push(buf);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch (err) {
    throw new AppError(400, 'invalid_json', `Malformed JSON body: ${(err as Error).message}`);
  }
  if (!Array.isArray(parsed)) {
    throw ValidationError.field('body', 'must be an array of connections (or send NDJSON with Content-Type: application/x-ndjson)');
  }
  if (parsed.length > limits.maxArrayItems) {
    throw new PayloadTooLargeError(
      `A JSON array import holds at most ${limits.maxArrayItems} items (got ${parsed.length}); send NDJSON (Content-Type: application/x-ndjson) for up to ${limits.maxLines}`,
    );
  }
  return parsed.map((value: unknown, index) => ({ index, value }));
}

/** A field-naming error for an item that does not match the import body (the same checks as the single import). */
function itemError(issues: readonly z.core.$ZodIssue[]): ValidationError {
  const details: FieldIssue[] = issues.map((i) => ({ field: i.path.map(String).join('.') || 'item', message: i.message }));
  return new ValidationError(`Invalid item: ${details.map((d) => `${d.field}: ${d.message}`).join('; ')}`, details);
}

const connectionIdOf = (value: unknown): string | null => {
  const id = (value as { connection_id?: unknown } | null)?.connection_id;
  return typeof id === 'string' && id.length <= 255 ? id : null;
};
const keyOf = (value: unknown): string | null => {
  const key = (value as { provider_config_key?: unknown } | null)?.provider_config_key;
  return typeof key === 'string' && key.length <= 255 ? key : null;
};

/**
 * Imports items in batches: each item is validated like a single import (an invalid one gets its
 * error and the others go on), and batches of `batchSize` are written one transaction each. A
 * batch is cut early where an item names a connection the batch already holds, so a repeated
 * connection is imported in order, as separate requests would. The next batch is read and
 * validated while the previous one is written.
 */
export async function runImport<S extends z.ZodType>(opts: {
  items: AsyncIterable<RawItem> | Iterable<RawItem>;
  schema: S;
  toInput: (body: z.output<S>) => ConnectionInput;
  importBatch: (entries: ImportEntry[]) => Promise<ImportOutcome[]>;
  batchSize: number;
  /** Called with the number of items whose results are known (for the 413 of a body cut short). */
  progress?: (done: number) => void;
}): Promise<ImportSummary> {
  const results: ImportOutcome[] = [];
  let batch: ImportEntry[] = [];
  let keys = new Set<string>();
  let writing: Promise<void> = Promise.resolve();
  let done = 0;
  const record = (outcome: ImportOutcome) => {
    results[outcome.index] = outcome;
    opts.progress?.(++done);
  };
  const flush = () => {
    const entries = batch;
    batch = [];
    keys = new Set();
    if (!entries.length) return;
    const previous = writing;
    writing = (async () => {
      await previous;
      for (const outcome of await opts.importBatch(entries)) record(outcome);
    })();
    // Handled here so a failure while the body is still being read is not an unhandled rejection; it is awaited below.
    writing.catch(() => undefined);
  };
  const fail = (raw: RawItem, error: AppError) =>
    record({
      index: raw.index,
      connectionId: 'value' in raw ? connectionIdOf(raw.value) : null,
      providerConfigKey: 'value' in raw ? keyOf(raw.value) : null,
      status: 'error',
      error,
    });
  try {
    for await (const raw of opts.items) {
      if ('error' in raw) {
        fail(raw, raw.error);
        continue;
      }
      // A streamed item was not seen by the request-wide input guard.
      const bad = findUnstorable(raw.value, '');
      if (bad) {
        fail(raw, ValidationError.field(bad.field === 'body' ? 'item' : bad.field, bad.message));
        continue;
      }
      const parsed = opts.schema.safeParse(raw.value);
      if (!parsed.success) {
        fail(raw, itemError(parsed.error.issues));
        continue;
      }
      const input = opts.toInput(parsed.data);
      if (input.connectionId !== undefined) {
        const key = `${input.providerConfigKey}\u0000${input.connectionId}`;
        if (keys.has(key)) flush();
        keys.add(key);
      }
      batch.push({ index: raw.index, input });
      if (batch.length >= opts.batchSize) flush();
      // Surface a failed write at once instead of reading the rest of the body first.
      await Promise.race([writing, Promise.resolve()]);
    }
    flush();
  } finally {
    // Whatever stopped the loop, a batch being written finishes before the answer.
    await writing.catch(() => undefined);
  }
  await writing;
  const list = results.filter(Boolean);
  const count = (s: ImportOutcome['status']) => list.filter((r) => r.status === s).length;
  return { created: count('created'), updated: count('updated'), failed: count('error'), results: list };
}
