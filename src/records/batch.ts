import { sha256 } from '../lib/hash.js';

/** A record ready for the store: its id, its JSON text and the content hash of that text. */
export interface PreparedRecord {
  id: string;
  json: string;
  hash: string;
}

/** A record's content hash: the start of the SHA-256 of its JSON text's UTF-8 bytes. */
export function contentHash(json: string | Uint8Array): string {
  return sha256(json, 'base64url').slice(0, 24);
}

/** One record per id: the last of several with the same id wins (the array itself when ids are unique). */
export function lastOfEachId(records: PreparedRecord[]): PreparedRecord[] {
  const ids = new Set<string>();
  for (const r of records) ids.add(r.id);
  if (ids.size === records.length) return records;
  const byId = new Map<string, PreparedRecord>();
  for (const r of records) {
    byId.delete(r.id);
    byId.set(r.id, r);
  }
  return [...byId.values()];
}

/**
 * A batch of one model's records, encoded for the database as each record is prepared, into
 * Buffers outside the JS heap: a record's JSON text is garbage as soon as it is added, so batches
 * waiting for their write hold almost nothing for the garbage collector to copy. Two encodings:
 *
 * - `copy`: tuples of `COPY records (COPY_COLUMNS) FROM STDIN (FORMAT binary)`; `copyData` frames
 *   the tuples of one or more batches as CopyData protocol messages, ready for the socket;
 * - `arrays`: elements of the upsert's three `text[]` parameters (ids, hashes, JSON texts), which
 *   `arrayParameters` assembles in PostgreSQL's binary array format.
 *
 * Either one can be read back as records (`records()`), to write a batch the other way.
 */

/** The COPY column list of the `copy` encoding, in order. */
export const COPY_COLUMNS = ['connection_pk', 'model', 'external_id', 'data', 'hash', 'last_action'] as const;

/** Bytes of each Buffer; a record larger than that gets a Buffer of its own size. */
const CHUNK_BYTES = 64 * 1024;
/** CopyData message header: its type byte and length. */
const FRAME = 5;
const TEXT_OID = 25;
/** Characters of a content hash (`contentHash`). */
const HASH_LENGTH = 24;
/** Binary COPY header: signature, flags, header extension length. */
const COPY_HEADER = Buffer.concat([Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1'), Buffer.alloc(8)]);
/** Binary COPY trailer: a field count of -1. */
const COPY_TRAILER = Buffer.from([0xff, 0xff]);

/** Bytes appended to a list of Buffers, each starting with `reserve` bytes left for a header. */
class ChunkedBytes {
  readonly chunks: Buffer[] = [];
  /** Bytes written in each chunk, the reserved ones included. */
  readonly used: number[] = [];
  private current: Buffer | undefined;
  private at = 0;
  size = 0;

  constructor(private readonly reserve: number) {}

  /** A chunk with `n` bytes free, and where they start. */
  room(n: number): [Buffer, number] {
    if (!this.current || this.at + n > this.current.length) {
      this.current = Buffer.allocUnsafe(Math.max(CHUNK_BYTES, this.reserve + n));
      this.chunks.push(this.current);
      this.used.push(this.reserve);
      this.at = this.reserve;
    }
    return [this.current, this.at];
  }

  advance(n: number): void {
    this.at += n;
    this.size += n;
    this.used[this.used.length - 1] = this.at;
  }

  /** Appends one length-prefixed text (a 4-byte big-endian length, then its UTF-8 bytes); returns the bytes. */
  text(s: string): Buffer {
    const bytes = Buffer.byteLength(s);
    const [buf, at] = this.room(4 + bytes);
    buf.writeInt32BE(bytes, at);
    buf.write(s, at + 4, bytes, 'utf8');
    this.advance(4 + bytes);
    return buf.subarray(at + 4, at + 4 + bytes);
  }

  /** The written bytes of each chunk, without the reserved ones. */
  *parts(): Generator<Buffer> {
    for (const [i, chunk] of this.chunks.entries()) yield chunk.subarray(this.reserve, this.used[i]);
  }
}

/** Reads length-prefixed texts back. */
function* texts(bytes: ChunkedBytes, encoding: BufferEncoding = 'utf8'): Generator<string> {
  for (const part of bytes.parts()) {
    for (let at = 0; at < part.length;) {
      const n = part.readInt32BE(at);
      yield part.toString(encoding, at + 4, at + 4 + n);
      at += 4 + n;
    }
  }
}

/** A CopyData message around `payload`. */
function copyDataMessage(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(FRAME + payload.length);
  out[0] = 0x64; // 'd'
  out.writeInt32BE(4 + payload.length, 1);
  payload.copy(out, FRAME);
  return out;
}

export type BatchEncoding = 'copy' | 'arrays';

export class EncodedBatch {
  /** `copy`: the tuples, each chunk with room for its CopyData header; `arrays`: the JSON texts. */
  private readonly bytes: ChunkedBytes;
  /** `arrays` only: the elements of the ids and hashes parameters. */
  private readonly idBytes = new ChunkedBytes(0);
  private readonly hashBytes = new ChunkedBytes(0);
  private readonly tupleHead: Buffer;
  /** Every id added, to find one added twice (in this batch, or in two batches written together). */
  readonly ids = new Set<string>();
  private added = 0;

  constructor(
    readonly encoding: BatchEncoding,
    readonly connectionPk: number,
    readonly model: string,
  ) {
    this.bytes = new ChunkedBytes(encoding === 'copy' ? FRAME : 0);
    // Every COPY tuple starts with the same bytes: the field count, the connection and the model.
    const model8 = Buffer.from(model, 'utf8');
    this.tupleHead = Buffer.allocUnsafe(2 + 12 + 4 + model8.length);
    this.tupleHead.writeInt16BE(COPY_COLUMNS.length, 0);
    this.tupleHead.writeInt32BE(8, 2);
    this.tupleHead.writeBigInt64BE(BigInt(connectionPk), 6);
    this.tupleHead.writeInt32BE(model8.length, 14);
    model8.copy(this.tupleHead, 18);
  }

  /** A batch of these records in this encoding. */
  static of(
    encoding: BatchEncoding,
    connectionPk: number,
    model: string,
    records: Iterable<{ id: string; json: string; hash?: string }>,
  ): EncodedBatch {
    const batch = new EncodedBatch(encoding, connectionPk, model);
    for (const r of records) batch.add(r);
    return batch;
  }

  /** Records added (an id added twice counts twice: see `hasRepeatedIds`). */
  get count(): number {
    return this.added;
  }

  /** Bytes of the encoding so far. */
  get size(): number {
    return this.bytes.size + this.idBytes.size + this.hashBytes.size;
  }

  /** Whether an id was added more than once (the batch must then be rebuilt from `records()`). */
  get hasRepeatedIds(): boolean {
    return this.ids.size !== this.added;
  }

  /**
   * Adds a record. Without a hash, its content hash is taken from the JSON bytes just written
   * (the same digest as of the string): hashing the JS string allocated about its size again on the
   * V8 heap, and that outlived young-generation collections (Node 20, seen with V8's sampling heap
   * profiler): with ~1 KB records it was most of what a sync's worker promoted to the old generation.
   */
  add(r: { id: string; json: string; hash?: string }): void {
    this.ids.add(r.id);
    this.added++;
    if (this.encoding === 'arrays') {
      this.idBytes.text(r.id);
      const json = this.bytes.text(r.json);
      this.hashBytes.text(r.hash ?? contentHash(json));
      return;
    }
    const idBytes = Buffer.byteLength(r.id);
    const jsonBytes = Buffer.byteLength(r.json);
    const [buf, start] = this.bytes.room(this.tupleHead.length + 16 + idBytes + jsonBytes + (r.hash?.length ?? HASH_LENGTH) + 5);
    let at = start + this.tupleHead.copy(buf, start);
    at = buf.writeInt32BE(idBytes, at);
    at += buf.write(r.id, at, idBytes, 'utf8');
    at = buf.writeInt32BE(jsonBytes, at);
    at += buf.write(r.json, at, jsonBytes, 'utf8');
    const hash = r.hash ?? contentHash(buf.subarray(at - jsonBytes, at));
    at = buf.writeInt32BE(hash.length, at);
    at += buf.write(hash, at, 'latin1');
    at = buf.writeInt32BE(5, at);
    at += buf.write('added', at, 'latin1');
    this.bytes.advance(at - start);
  }

  /** The records, read back from the encoding, in the order they were added. */
  records(): PreparedRecord[] {
    const out: PreparedRecord[] = [];
    if (this.encoding === 'arrays') {
      const ids = texts(this.idBytes);
      const hashes = texts(this.hashBytes, 'latin1');
      for (const json of texts(this.bytes)) out.push({ id: ids.next().value as string, json, hash: hashes.next().value as string });
      return out;
    }
    // Each tuple: its head, then id, JSON text, hash and last action as length-prefixed fields.
    for (const part of this.bytes.parts()) {
      for (let at = 0; at < part.length;) {
        at += this.tupleHead.length;
        const field = () => {
          const n = part.readInt32BE(at);
          const s = part.toString('utf8', at + 4, at + 4 + n);
          at += 4 + n;
          return s;
        };
        const id = field();
        const json = field();
        const hash = field();
        field();
        out.push({ id, json, hash });
      }
    }
    return out;
  }

  /** The COPY data stream of `copy` batches as CopyData messages: header, their tuples, trailer. */
  static copyData(batches: readonly EncodedBatch[]): Buffer[] {
    const messages = [copyDataMessage(COPY_HEADER)];
    for (const batch of batches) {
      if (batch.encoding !== 'copy') throw new Error('not a COPY batch');
      batch.bytes.chunks.forEach((chunk, i) => {
        const end = batch.bytes.used[i]!;
        chunk[0] = 0x64; // 'd'
        chunk.writeInt32BE(end - 1, 1);
        messages.push(chunk.subarray(0, end));
      });
    }
    messages.push(copyDataMessage(COPY_TRAILER));
    return messages;
  }

  /** The upsert's ids, hashes and JSON texts of `arrays` batches, as `text[]` parameters. */
  static arrayParameters(batches: readonly EncodedBatch[]): { count: number; ids: Buffer; hashes: Buffer; data: Buffer } {
    const count = batches.reduce((n, b) => n + b.count, 0);
    const parameter = (pick: (b: EncodedBatch) => ChunkedBytes) => {
      const out = Buffer.allocUnsafe(20 + batches.reduce((n, b) => n + pick(b).size, 0));
      out.writeInt32BE(1, 0); // dimensions
      out.writeInt32BE(0, 4); // no nulls
      out.writeInt32BE(TEXT_OID, 8);
      out.writeInt32BE(count, 12);
      out.writeInt32BE(1, 16); // lower bound
      let at = 20;
      for (const b of batches) for (const part of pick(b).parts()) at += part.copy(out, at);
      return out;
    };
    for (const b of batches) if (b.encoding !== 'arrays') throw new Error('not an arrays batch');
    return { count, ids: parameter((b) => b.idBytes), hashes: parameter((b) => b.hashBytes), data: parameter((b) => b.bytes) };
  }
}
