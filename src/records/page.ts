import type { PositionCursors } from '../lib/cursor.js';

/**
 * Renders a `GET /records` page from the rows `readRecords` read (PostgreSQL's binary COPY format,
 * columns `PAGE_COLUMNS`): each record's stored JSON bytes are copied into the page with its
 * `_nango_metadata` in place of the closing brace, so no record is decoded, parsed or
 * re-serialized. `limit` rows at most; one more row than that means the feed goes on.
 */
export function renderRecordsPage(copy: Buffer, limit: number, cursors: PositionCursors): Buffer {
  const rows = readRows(copy);
  const n = Math.min(rows.count, limit);
  const cursorOf = cursors.sealMany(rows.cursor.subarray(0, n));
  const head = '{"records":[';
  const tail = `],"next_cursor":${rows.count > limit && n ? `"${cursorOf[n - 1]}"` : 'null'}}`;
  const metas = new Array<string>(n);
  // The rows' bytes (their data, less each closing brace) and their metadata: an exact size.
  let size = head.length + tail.length;
  for (let i = 0; i < n; i++) {
    const deleted = rows.deletedAt[i]!;
    metas[i] =
      `,"_nango_metadata":{"first_seen_at":"${rows.firstSeenAt[i]!}","last_modified_at":"${rows.modifiedAt[i]!}",` +
      `"last_action":"${rows.action[i]!}","deleted_at":${deleted ? `"${deleted}"` : 'null'},` +
      `"cursor":"${cursorOf[i]!}"}}${i < n - 1 ? ',' : ''}`;
    size += rows.dataEnd[i]! - rows.dataStart[i]! - 1 + metas[i]!.length;
  }
  const out = Buffer.allocUnsafe(size);
  let at = out.write(head, 0, 'latin1');
  for (let i = 0; i < n; i++) {
    at += copy.copy(out, at, rows.dataStart[i], rows.dataEnd[i]! - 1);
    at += out.write(metas[i]!, at, 'latin1');
  }
  at += out.write(tail, at, 'latin1');
  if (at !== size) throw new Error(`records page: wrote ${at} of ${size} bytes`);
  return out;
}

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
/** 2000-01-01T00:00:00Z, PostgreSQL's epoch for timestamps, in Unix milliseconds. */
const PG_EPOCH_MS = 946_684_800_000;

interface Rows {
  count: number;
  dataStart: Uint32Array;
  dataEnd: Uint32Array;
  action: string[];
  firstSeenAt: string[];
  modifiedAt: string[];
  deletedAt: (string | null)[];
  cursor: Float64Array;
}

/** The rows of a binary COPY of `PAGE_COLUMNS`: where each record's JSON is, the rest decoded. */
function readRows(buf: Buffer): Rows {
  if (buf.length < 19 || !buf.subarray(0, 11).equals(SIGNATURE)) throw new Error('records page: not a binary COPY');
  let at = 15 + 4 + buf.readUInt32BE(15);
  // Generous: a row takes more than 60 bytes (its id alone makes the JSON 9 bytes or more).
  const max = Math.ceil(buf.length / 50);
  const rows: Rows = {
    count: 0,
    dataStart: new Uint32Array(max),
    dataEnd: new Uint32Array(max),
    action: [],
    firstSeenAt: [],
    modifiedAt: [],
    deletedAt: [],
    cursor: new Float64Array(max),
  };
  // Rows written together share their timestamps (`now()` of one transaction): each is formatted once.
  const times = new Map<number, string>();
  const time = (micros: number): string => {
    let text = times.get(micros);
    if (text === undefined) {
      // Milliseconds, truncated as PostgreSQL's to_char(…, 'MS') does, as ISO 8601 in UTC.
      text = new Date(Math.floor(micros / 1000) + PG_EPOCH_MS).toISOString();
      times.set(micros, text);
    }
    return text;
  };
  const int64 = (p: number): number => buf.readInt32BE(p) * 2 ** 32 + buf.readUInt32BE(p + 4);
  for (;;) {
    const fields = buf.readInt16BE(at);
    at += 2;
    if (fields === -1) break;
    if (fields !== 6) throw new Error(`records page: a row of ${fields} columns`);
    const i = rows.count++;
    // data
    let len = buf.readInt32BE(at);
    rows.dataStart[i] = at + 4;
    at += 4 + len;
    rows.dataEnd[i] = at;
    // last_action
    len = buf.readInt32BE(at);
    const action = buf[at + 4] === 0x61 ? 'ADDED' : buf[at + 4] === 0x75 ? 'UPDATED' : 'DELETED';
    rows.action.push(action);
    at += 4 + len;
    // first_seen_at, modified_at (never null), deleted_at: 8 bytes each
    rows.firstSeenAt.push(time(int64(at + 4)));
    rows.modifiedAt.push(time(int64(at + 16)));
    at += 24;
    if (buf.readInt32BE(at) === -1) {
      rows.deletedAt.push(null);
      at += 4;
    } else {
      rows.deletedAt.push(time(int64(at + 4)));
      at += 12;
    }
    // cursor
    rows.cursor[i] = int64(at + 4);
    at += 12;
  }
  return rows;
}
