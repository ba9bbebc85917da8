/**
 * Speed-ups that lean on a library's private behaviour, pinned: package.json holds the exact versions they were
 * measured on, and these tests fail if an upgrade changes what they rely on.
 *  - src/lib/logger.ts writes a child logger's primitive bindings into pino's `chindingsSym` itself;
 *  - src/records/copy.ts writes framed CopyData messages straight to node-postgres's `connection.stream`;
 *  - src/http/fast-serializer.ts compiles zod's JSON Schema with fast-json-stringify;
 *  - light-my-request 6.8 runs on cookie 1.1.1 (package.json `overrides`), which must still frame its cookies.
 */
import { Writable } from 'node:stream';
import Fastify from 'fastify';
import pg from 'pg';
import type pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { connection as connectionSchema } from '../../src/connections/schemas.js';
import { fastSerializerCompiler } from '../../src/http/fast-serializer.js';
import { createLogger } from '../../src/lib/logger.js';
import { contentHash, COPY_COLUMNS, EncodedBatch } from '../../src/records/batch.js';
import { PipelinedCopy } from '../../src/records/copy.js';
import { authToken } from '../../src/tokens/routes.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from '../helpers/app.js';

describe("pino: the cheap child logger writes what pino's own child writes", () => {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(...chunk.toString('utf8').split('\n').filter(Boolean));
      cb();
    },
  });
  const root = createLogger({ level: 'info', destination });
  // The override is an own property of the root; pino's child is on its prototype.
  const pinoChild = Object.getPrototypeOf(root).child as (this: pino.Logger, b: pino.Bindings, o?: pino.ChildLoggerOptions) => pino.Logger;
  // eslint-disable-next-line @typescript-eslint/unbound-method -- compares the function's identity; it is not called
  expect(root.child).not.toBe(pinoChild);

  /** The line each logger writes for the same call, with the time (the one field allowed to differ) removed. */
  const both = (make: (child: (b: pino.Bindings) => pino.Logger) => pino.Logger, write: (l: pino.Logger) => void): [string, string] => {
    const out: string[] = [];
    for (const child of [(b: pino.Bindings) => root.child(b), (b: pino.Bindings) => pinoChild.call(root, b)]) {
      lines.length = 0;
      write(make(child));
      expect(lines).toHaveLength(1);
      out.push(lines[0]!.replace(/"time":"[^"]+",/, ''));
    }
    return out as [string, string];
  };

  it.each([
    ['a request id', { reqId: 'req-1' }],
    ['numbers and booleans', { runId: 'r', attempt: 3, ratio: 0.5, big: 1e21, neg: -0, ok: false }],
    ['strings that need escaping', { q: 'say "hi"\n\t\\ \u2028 é 😀 \u0001', '"odd key"': 'x' }],
    ['undefined bindings (skipped)', { a: 'x', gone: undefined }],
    ['a key pino redacts at the top level', { authorization: 'Bearer sk_live', credentials: 'c', secret_key: 's' }],
    ['an object binding', { conn: { id: 1, access_token: 'tok' } }],
    ['a serialized key', { req: { method: 'GET', url: '/x?token=secret', headers: {} } }],
  ])('%s', (_name, bindings) => {
    const [ours, theirs] = both(
      (child) => child(bindings),
      (l) => l.info({ extra: 1 }, 'hello'),
    );
    expect(ours).toBe(theirs);
    expect(ours).not.toMatch(/sk_live|"tok"|token=secret/);
  });

  it('children of children, and a child with its own level', () => {
    const [ours, theirs] = both(
      (child) => child({ reqId: 'r1' }).child({ runId: 'run-9', n: 2 }),
      (l) => l.warn('nested'),
    );
    expect(ours).toBe(theirs);
    expect(JSON.parse(ours)).toMatchObject({ reqId: 'r1', runId: 'run-9', n: 2, msg: 'nested', service: 'terapi' });
    const quiet = root.child({ reqId: 'q' }, { level: 'error' });
    lines.length = 0;
    quiet.info('dropped');
    quiet.error('kept');
    expect(lines.map((l) => JSON.parse(l).msg)).toEqual(['kept']);
  });
});

describe('fast-json-stringify: the fast route serializer writes the JSON zod and JSON.stringify write', () => {
  const cases: [string, z.ZodType, unknown[]][] = [
    [
      'the auth token',
      authToken,
      [
        {
          type: 'Bearer',
          access_token: 'gho_x',
          expires_at: '2030-01-01T00:00:00.000Z',
          raw: { scope: 'repo', n: 1, nested: { a: [1, null, 'x'] } },
        },
        { type: 'ApiKey', access_token: 'k "quoted" \u2028 é', raw: {} },
      ],
    ],
    [
      'the connection',
      connectionSchema,
      [
        {
          id: 'c1',
          provider_config_key: 'gh',
          provider: 'github',
          created_at: '2030-01-01T00:00:00.000Z',
          updated_at: '2030-01-02T00:00:00.000Z',
          metadata: { deep: { list: [1, 2, { x: true }] }, empty: {}, nil: null, s: 'a\nb' },
          credentials: { type: 'OAUTH2', expires_at: '2030-01-01T01:00:00.000Z' },
          error: { type: 'auth', code: 'refresh_revoked', message: 'gone', at: '2030-01-01T00:00:00.000Z' },
        },
        {
          id: 'c2',
          provider_config_key: 'gh',
          provider: 'github',
          created_at: '2030-01-01T00:00:00.000Z',
          updated_at: '2030-01-01T00:00:00.000Z',
          metadata: {},
          credentials: { type: 'API_KEY' },
        },
      ],
    ],
  ];

  it.each(cases)('%s', (_name, schema, values) => {
    const serialize = fastSerializerCompiler({ schema });
    // Same JSON value (it writes required properties before optional ones, so the bytes may be ordered differently).
    for (const value of values) expect(JSON.parse(serialize(value))).toEqual(JSON.parse(JSON.stringify(schema.parse(value))));
  });

  it('writes only declared properties (nothing outside the schema leaks)', () => {
    const serialize = fastSerializerCompiler({ schema: authToken });
    const out = JSON.parse(serialize({ type: 'Bearer', access_token: 'a', raw: {}, refresh_token: 'must-not-appear' }));
    expect(out).toEqual({ type: 'Bearer', access_token: 'a', raw: {} });
  });
});

describe('light-my-request on cookie 1.1.1: injected cookies arrive as a cookie header', () => {
  it('frames and encodes cookies as cookie 2 would for ordinary values', async () => {
    const app = Fastify();
    app.get('/', async (req) => ({ cookie: req.headers.cookie ?? null }));
    const res = await app.inject({ method: 'GET', url: '/', cookies: { a: 'plain', b: 'with space;semi' } });
    expect(res.json()).toEqual({ cookie: 'a=plain; b=with%20space%3Bsemi' });
    await app.close();
  });
});

/** The pipelined COPY runs on node-postgres only (PGlite takes the upsert path): it needs the Postgres pass. */
describe.skipIf(!usingPostgres)('pg: a pipelined COPY writes rows that read back identical', () => {
  let db: TestDatabase;
  let client: pg.Client;
  const table = 'copy_probe';
  const columns = COPY_COLUMNS.join(', ');
  const copy = (prefix: string, batch: EncodedBatch) => {
    const run = new PipelinedCopy(`${prefix}COPY ${table} (${columns}) FROM STDIN (FORMAT binary); COMMIT`, EncodedBatch.copyData([batch]));
    client.query(run);
    return run.done;
  };

  beforeAll(async () => {
    db = await createTestDatabase();
    client = new pg.Client({ connectionString: db.url });
    await client.connect();
    await client.query(
      `CREATE TABLE ${table} (connection_pk bigint NOT NULL, model text NOT NULL, external_id text NOT NULL, data json NOT NULL, hash text NOT NULL, last_action text NOT NULL, PRIMARY KEY (connection_pk, model, external_id))`,
    );
  });
  afterAll(async () => {
    await client?.end();
    await db?.drop();
  });

  it('every byte of every record, over several 64 KB chunks, in one round trip', async () => {
    const records = Array.from({ length: 300 }, (_, i) => {
      const json = JSON.stringify({
        i,
        title: `issue "${i}" é 😀 \u2028`,
        body: 'x'.repeat(i === 7 ? 200_000 : (i * 37) % 900),
        tags: ['a', i],
      });
      return { id: `id-${String(i).padStart(3, '0')}`, json };
    });
    const tags = await copy('BEGIN; ', EncodedBatch.of('copy', 42, 'Thing', records));
    expect(tags).toEqual(['BEGIN', 'COPY 300', 'COMMIT']);
    const { rows } = await client.query(
      `SELECT connection_pk, model, external_id, data::text AS data, hash, last_action FROM ${table} ORDER BY external_id`,
    );
    expect(rows).toEqual(
      records.map((r) => ({
        connection_pk: '42',
        model: 'Thing',
        external_id: r.id,
        data: r.json,
        hash: contentHash(r.json),
        last_action: 'added',
      })),
    );
  });

  it('an id that exists stops the COPY with the unique violation, and the connection stays usable', async () => {
    await expect(
      copy(
        'BEGIN; ',
        EncodedBatch.of('copy', 42, 'Thing', [
          { id: 'new-1', json: '{}' },
          { id: 'id-001', json: '{}' },
        ]),
      ),
    ).rejects.toMatchObject({ code: '23505' });
    await client.query('ROLLBACK');
    const { rows } = await client.query(`SELECT count(*)::int AS n FROM ${table}`);
    expect(rows[0].n).toBe(300);
  });

  it('a statement failing before the COPY: the copy data is dropped with the rest of the query', async () => {
    await expect(copy('BEGIN; SELECT 1/0; ', EncodedBatch.of('copy', 42, 'Thing', [{ id: 'never', json: '{}' }]))).rejects.toMatchObject({
      code: '22012',
    });
    await client.query('ROLLBACK');
    const { rows } = await client.query(`SELECT count(*)::int AS n FROM ${table} WHERE external_id = 'never'`);
    expect(rows[0].n).toBe(0);
  });
});
