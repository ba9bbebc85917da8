/**
 * Ingest benchmark: a sync saving N records (default 100,000, ~1 KB each) through `batchSave`,
 * against a raw `COPY … FROM STDIN` of the same rows into the same `records` table, measured in
 * the same run on real Postgres (issue target: ratio ≥ 0.7), plus the re-sync rates.
 *
 *   npx tsx bench/ingest.ts                     # 100,000 records, batchSave batches of 1,000
 *   npx tsx bench/ingest.ts --batch=100         # one batchSave per 100 records (a GitHub page)
 *   npx tsx bench/ingest.ts --drop-index=records_modified_idx --out=ingest-no-modified-idx.json
 *                                               # the same without an index (its cost on ingest)
 *   node --max-semi-space-size=64 --import tsx bench/ingest.ts --out=ingest-docker-flags.json
 *                                               # with the Docker image's NODE_OPTIONS (a 64 MB young generation)
 *
 * The sync path is the real one: the app is built as `terapi serve` builds it (createServices +
 * buildApp + startWorkers, real config defaults, real Redis with a unique queue prefix), a
 * bench-only sync (`bench-ingest`, registered with `extraFunctions` for provider github, model
 * `BenchIssue` = the built-in GithubIssue zod schema) is enabled through the API and started with
 * `POST /sync/start`, later `POST /sync/trigger`; a BullMQ worker picks the job and the sync runner
 * executes it. Its exec generates the records in memory and calls `ctx.batchSave` once per batch:
 * zod validation, serialization and hashing per record, then the records writer (COPY for the
 * first records of a feed, upserts otherwise; one transaction per write, with the feed's lock and
 * the run's counts).
 *
 * The baseline: the same rows (same JSON text and hash, prepared before the clock starts) sent by
 * one `COPY records (connection_pk, model, external_id, data, hash, last_action) FROM STDIN`
 * through a pg client, in one transaction, into the same (truncated) table with the same indexes
 * and cursor sequence default, in text format, with a tiny pg Submittable of its own (CopyData
 * messages of 64 KB, respecting the socket's backpressure, then CopyDone).
 *
 * Order: one COPY and one sync first run as warm-ups (not measured: a fresh database's first bulk
 * write creates WAL segments; a worker's first run compiles its code), then --rounds (default 3)
 * of COPY, sync first run, unchanged re-sync, changed re-sync. Each ratio is taken against the
 * COPY of its own round; the summary gives medians over rounds. Before each measured phase:
 * CHECKPOINT, then a quiet machine; a phase during which other processes used more than
 * --max-other-load cores is measured again (--attempts, default 3).
 *
 * Phases (skip with --no-phases): the same records through each step alone, in this process, to
 * show where the sync's time goes: generating, zod validation, prepareRecords (JSON.stringify +
 * SHA-256), the records writer alone, upsertRecords alone.
 *
 * Stops by itself (--max-seconds, default 900); the database `terapi_bench_<random>` is dropped
 * and the queue prefix's Redis keys deleted on exit. Results: bench/results/ingest[-<batch>].json.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';
import { sql } from 'drizzle-orm';
import pg from 'pg';
import { queryRows } from '../src/db/client.js';
import { GithubIssue } from '../src/functions/library/github.js';
import { EncodedBatch, type PreparedRecord } from '../src/records/batch.js';
import { PipelinedCopy } from '../src/records/copy.js';
import { upsertRecords } from '../src/records/repository.js';
import { createRecordWriter } from '../src/records/writer.js';
import { formatSummary, summarizeProfile } from './profile-summary.js';
import {
  BENCH_MODEL,
  INGEST_SYNC,
  PROVIDER_CONFIG_KEY,
  arg,
  argv,
  type BenchApp,
  benchIssue,
  codeVersion,
  cpuWindow,
  type CpuWindow,
  guard,
  ingestPlan,
  machine,
  markdownTable,
  numArg,
  postgresSettings,
  prepareRecords,
  resultsDir,
  round,
  say,
  sleep,
  startBenchApp,
  waitForQuiet,
} from './workloads.js';

const N = numArg('records', 100_000);
const BATCH = numArg('batch', 1000);
const ROUNDS = numArg('rounds', 3);
const PHASES = argv.get('no-phases') !== 'true';
const PROFILE = argv.get('profile') === 'true';
const TARGET = 0.7;
const round3 = (x: number) => round(x, 3);

// ---------------------------------------------------------------------------------------------
// COPY FROM STDIN through node-postgres: the statement and the data in one go (src/records/copy.ts)

const COPY_TEXT = 'COPY records (connection_pk, model, external_id, data, hash, last_action) FROM STDIN';

/** `COPY … FROM STDIN` of `messages` (CopyData messages); resolves with the rows copied. */
async function copyIn(client: pg.Client, text: string, messages: readonly Buffer[]): Promise<number> {
  const copy = new PipelinedCopy(text, messages);
  void client.query(copy);
  const tags = await copy.done;
  return Number(/^COPY (\d+)$/.exec(tags.at(-1) ?? '')?.[1] ?? -1);
}

/**
 * COPY text format (tab-separated, `\N` for null; backslashes doubled: JSON text has no raw control
 * characters) in CopyData messages of about 64 KB.
 */
function copyChunks(connectionPk: number, rows: readonly PreparedRecord[]): Buffer[] {
  const chunks: Buffer[] = [];
  let buf = '';
  const esc = (s: string) => (s.includes('\\') ? s.replaceAll('\\', '\\\\') : s);
  const flush = () => {
    const data = Buffer.from(buf);
    const message = Buffer.allocUnsafe(5 + data.length);
    message[0] = 0x64; // 'd'
    message.writeInt32BE(4 + data.length, 1);
    data.copy(message, 5);
    chunks.push(message);
    buf = '';
  };
  for (const r of rows) {
    buf += `${connectionPk}\t${BENCH_MODEL}\t${esc(r.id)}\t${esc(r.json)}\t${r.hash}\tadded\n`;
    if (buf.length >= 64 * 1024) flush();
  }
  if (buf) flush();
  return chunks;
}

// ---------------------------------------------------------------------------------------------

interface Phase {
  label: string;
  records: number;
  ms: number;
  recordsPerS: number;
  cpu?: { processCores: number; postgresCores: number; otherCores: number; processMsPerKRecords: number; postgresMsPerKRecords: number };
  detail?: Record<string, unknown>;
}

function phase(label: string, records: number, ms: number, cpu?: CpuWindow, detail?: Record<string, unknown>): Phase {
  const p: Phase = { label, records, ms: round(ms, 1), recordsPerS: Math.round((records / ms) * 1000), detail };
  if (cpu) {
    p.cpu = {
      processCores: round(cpu.processMs / cpu.wallMs),
      postgresCores: round(cpu.postgresMs / cpu.wallMs),
      otherCores: round(cpu.otherMs / cpu.wallMs),
      processMsPerKRecords: round((cpu.processMs / records) * 1000, 1),
      postgresMsPerKRecords: round((cpu.postgresMs / records) * 1000, 1),
    };
  }
  say(
    `  ${label}: ${records} records in ${p.ms} ms → ${p.recordsPerS} records/s${p.cpu ? ` (this process ${p.cpu.processCores} cores, postgres ${p.cpu.postgresCores}, other ${p.cpu.otherCores})` : ''}`,
  );
  return p;
}

/** --profile: the V8 sampling profiler (this process: runner, worker, API) around the first sync run only. */
async function profiled<T>(fn: () => Promise<T>): Promise<T> {
  if (!PROFILE) return fn();
  const session = new Session();
  session.connect();
  const post = <R = unknown>(method: string, params: object = {}) =>
    new Promise<R>((resolve, reject) => session.post(method, params, (err, res) => (err ? reject(err) : resolve(res as R))));
  await post('Profiler.enable');
  await post('Profiler.setSamplingInterval', { interval: 250 });
  await post('Profiler.start');
  try {
    return await fn();
  } finally {
    const { profile } = await post<{ profile: unknown }>('Profiler.stop');
    session.disconnect();
    const file = path.join(resultsDir, `ingest-sync-batch${BATCH}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    const text = formatSummary(summarizeProfile(file), 30);
    writeFileSync(path.join(resultsDir, `profile-ingest-sync-batch${BATCH}.txt`), `${text}\n`);
    say(text);
  }
}

/** How this run was started: `npx tsx …`, or `node <flags> --import tsx …` when Node flags were given. */
function commandLine(): string {
  const flags: string[] = [];
  for (let i = 0; i < process.execArgv.length; i++) {
    const a = process.execArgv[i]!;
    if ((a === '--import' || a === '--require') && process.execArgv[i + 1]?.includes('tsx')) i++;
    else if (!a.includes('tsx')) flags.push(a);
  }
  const args = `bench/ingest.ts ${process.argv.slice(2).join(' ')}`.trim();
  return flags.length ? `node ${flags.join(' ')} --import tsx ${args}` : `npx tsx ${args}`;
}

async function main() {
  say(`■ ingest: ${N} records, batchSave batches of ${BATCH}`);
  // eslint-disable-next-line prefer-const -- the guard's cleanup reads `b` before it is assigned; a const would be in its temporal dead zone there
  let b: BenchApp | undefined;
  guard(async () => b?.close(), numArg('max-seconds', 900));
  b = await startBenchApp({ db: 'postgres', workers: true });
  const bench = b;
  const dbName = bench.db.dbName!;
  const pk = bench.connectionPk;
  const db = bench.db.database.db;
  await bench.call('POST', `/integration/${PROVIDER_CONFIG_KEY}/functions`, { name: INGEST_SYNC, auto_start: false });
  const [syncRow] = await queryRows<{ id: string }>(db, sql`SELECT id FROM syncs WHERE name = ${INGEST_SYNC}`);
  const syncId = Number(syncRow!.id);

  const copyClient = new pg.Client({ connectionString: bench.db.url });
  await copyClient.connect();
  const admin = async (q: string) => void (await copyClient.query(q));
  // --drop-index=<name>: the same run without one of the table's indexes (what that index costs ingest).
  const dropIndex = arg('drop-index', '');
  if (dropIndex) {
    await admin(`DROP INDEX ${pg.escapeIdentifier(dropIndex)}`);
    say(`  without index ${dropIndex}`);
  }
  const count = async () => Number((await copyClient.query<{ n: string }>('SELECT count(*) AS n FROM records')).rows[0]!.n);
  const settle = async () => {
    // Same starting point for every measured phase: dirty pages written, then a quiet machine.
    await admin('CHECKPOINT');
    await waitForQuiet();
  };

  // The exact rows the sync stores (zod output, then prepareRecords), prepared off the clock and
  // kept only as the COPY stream's Buffers (outside the JS heap, so the sync's GC does not scan them).
  const { chunks, avgBytes } = (() => {
    const prepared = prepareRecords(Array.from({ length: N }, (_, i) => GithubIssue.parse(benchIssue(i)) as Record<string, unknown>));
    return { chunks: copyChunks(pk, prepared), avgBytes: Math.round(prepared.reduce((s, r) => s + Buffer.byteLength(r.json), 0) / N) };
  })();
  const copyBytes = chunks.reduce((s, c) => s + c.length, 0);
  say(`  records: ${avgBytes} bytes of JSON on average; COPY stream ${round(copyBytes / 2 ** 20, 1)} MiB`);

  const phases: Phase[] = [];
  /**
   * Runs a measurement up to --attempts times (default 3) while other processes used more than
   * --max-other-load cores (default 0.25) during it; keeps the quietest attempt.
   */
  const ATTEMPTS = numArg('attempts', 3);
  const MAX_OTHER = numArg('max-other-load', 0.25);
  const quietest = async <T extends { cpu?: Phase['cpu'] }>(label: string, fn: (attempt: number) => Promise<T>): Promise<T> => {
    let best: T | undefined;
    for (let attempt = 1; attempt <= ATTEMPTS; attempt++) {
      const r = await fn(attempt);
      if (!best || (r.cpu?.otherCores ?? 0) < (best.cpu?.otherCores ?? 0)) best = r;
      if ((r.cpu?.otherCores ?? 0) <= MAX_OTHER) break;
      if (attempt < ATTEMPTS) say(`  ${label}: other load ${r.cpu?.otherCores} cores during the measurement; again`);
    }
    return best!;
  };

  const runCopy = (label: string) =>
    quietest(label, async () => {
      await admin('TRUNCATE records');
      await settle();
      const w = await cpuWindow(dbName);
      const t0 = performance.now();
      await admin('BEGIN');
      const rows = await copyIn(copyClient, COPY_TEXT, chunks);
      await admin('COMMIT');
      const ms = performance.now() - t0;
      const cpu = await w.end();
      if (rows !== N || (await count()) !== N) throw new Error(`COPY wrote ${rows} rows, expected ${N}`);
      return phase(label, N, ms, cpu, { bytes: copyBytes });
    }).then((p) => {
      phases.push(p);
      return p;
    });

  /** One sync run through the worker: from the API call that queues it to its run row finished. */
  const runSync = async (label: string, how: 'start' | 'trigger', generation: number) => {
    ingestPlan.records = N;
    ingestPlan.batchSize = BATCH;
    ingestPlan.generation = generation;
    ingestPlan.result.done = false;
    const before = await queryRows<{ id: string }>(db, sql`SELECT id FROM runs WHERE sync_id = ${syncId}`);
    const maxCursorBefore = (await copyClient.query<{ m: string | null }>('SELECT max(cursor) AS m FROM records')).rows[0]!.m;
    await settle();
    const w = await cpuWindow(dbName);
    const t0 = performance.now();
    const body = { provider_config_key: PROVIDER_CONFIG_KEY, connection_id: bench.connectionId, syncs: [INGEST_SYNC] };
    await bench.call('POST', how === 'start' ? '/sync/start' : '/sync/trigger', body);
    let run: { id: string; status: string; added: number; updated: number; deleted: number } | undefined;
    for (;;) {
      // Poll lightly while exec runs (it reports when it is done), then closely for the run row.
      await sleep(ingestPlan.result.done ? 5 : 50);
      if (!ingestPlan.result.done) continue;
      [run] = await queryRows<NonNullable<typeof run>>(
        db,
        sql`SELECT id, status, added, updated, deleted FROM runs WHERE sync_id = ${syncId} AND status IN ('success', 'error')
             AND id <> ALL(${sql.param(before.map((r) => r.id))}::uuid[]) LIMIT 1`,
      );
      if (run) break;
    }
    const ms = performance.now() - t0;
    const cpu = await w.end();
    if (run.status !== 'success')
      throw new Error(
        `sync run ${run.id} ended with ${run.status}: ${JSON.stringify(await queryRows(db, sql`SELECT error FROM runs WHERE id = ${run.id}`))}`,
      );
    const r = ingestPlan.result;
    const maxCursorAfter = (await copyClient.query<{ m: string | null }>('SELECT max(cursor) AS m FROM records')).rows[0]!.m;
    const counts = { added: Number(run.added), updated: Number(run.updated), deleted: Number(run.deleted) };
    const end = phase(`${label}: end to end (API call → run finished)`, N, ms, cpu, {
      counts,
      batches: r.batches,
      generateMs: round(r.generateMs, 1),
      maxCursorBefore,
      maxCursorAfter,
    });
    const save = phase(`${label}: inside batchSave`, N, r.saveMs);
    return { end, save, counts, maxCursorBefore, maxCursorAfter, cpu: end.cpu };
  };
  const keep = <T extends { end: Phase; save: Phase }>(r: T): T => {
    phases.push(r.end, r.save);
    return r;
  };
  let generation = 0;

  // Warm-up, not measured: the first bulk write into a fresh database creates WAL segments and
  // grows relation files; every measured phase after it finds them in place.
  await admin('TRUNCATE records');
  {
    await admin('BEGIN');
    await copyIn(copyClient, COPY_TEXT, chunks);
    await admin('COMMIT');
  }

  // The sync's warm-up, not measured either: a worker that has run before (code compiled by the JIT).
  {
    await admin('TRUNCATE records');
    const r = await runSync('warm-up: sync, first run (all new)', 'start', generation);
    if (r.counts.added !== N) throw new Error(`warm-up run: counts ${JSON.stringify(r.counts)}`);
  }

  // Rounds: COPY, then the sync's first run, unchanged re-sync and changed re-sync, each round on
  // its own; the ratio is taken within a round (COPY and sync minutes apart at most).
  const rounds: { copy: Phase; first: Phase; firstSave: Phase; unchanged: Phase; unchangedSave: Phase; changed: Phase; ratio: number }[] =
    [];
  for (let n = 1; n <= ROUNDS; n++) {
    say(`■ round ${n} of ${ROUNDS}`);
    const copy = await runCopy(`round ${n}: COPY`);
    const first = keep(
      await quietest('first run', async () => {
        await admin('TRUNCATE records');
        const run = () => runSync(`round ${n}: sync, first run (all new)`, 'trigger', generation);
        const r = n === 1 ? await profiled(run) : await run();
        if (r.counts.added !== N || (await count()) !== N)
          throw new Error(`first run: counts ${JSON.stringify(r.counts)}, expected ${N} added`);
        return r;
      }),
    );
    const again = keep(
      await quietest('unchanged re-sync', async () => {
        const r = await runSync(`round ${n}: re-sync, unchanged`, 'trigger', generation);
        if (r.counts.added || r.counts.updated || r.maxCursorAfter !== r.maxCursorBefore) {
          throw new Error(
            `unchanged re-sync rewrote records: ${JSON.stringify(r.counts)}, cursor ${r.maxCursorBefore} → ${r.maxCursorAfter}`,
          );
        }
        return r;
      }),
    );
    const changed = keep(
      await quietest('changed re-sync', async () => {
        const r = await runSync(`round ${n}: re-sync, every record changed`, 'trigger', ++generation);
        if (r.counts.updated !== N) throw new Error(`changed re-sync: ${JSON.stringify(r.counts)}, expected ${N} updated`);
        return r;
      }),
    );
    rounds.push({
      copy,
      first: first.end,
      firstSave: first.save,
      unchanged: again.end,
      unchangedSave: again.save,
      changed: changed.end,
      ratio: round3(first.end.recordsPerS / copy.recordsPerS),
    });
    say(`  round ${n}: first run / COPY = ${rounds.at(-1)!.ratio}`);
  }

  // Phase breakdown: the same work, step by step, in this process.
  const breakdown: Phase[] = [];
  if (PHASES) {
    say('■ phases (the same records, one step at a time)');
    await waitForQuiet();
    let t = performance.now();
    const raw = Array.from({ length: N }, (_, i) => benchIssue(i));
    breakdown.push(phase('generate records (the bench provider)', N, performance.now() - t));
    t = performance.now();
    const valid: Record<string, unknown>[] = [];
    for (const item of raw) {
      const parsed = GithubIssue.safeParse(item);
      if (!parsed.success) throw new Error('invalid');
      valid.push(parsed.data);
    }
    breakdown.push(phase('zod safeParse (GithubIssue)', N, performance.now() - t));
    t = performance.now();
    const prep: PreparedRecord[][] = [];
    for (let i = 0; i < N; i += BATCH) prep.push(prepareRecords(valid.slice(i, i + BATCH)));
    breakdown.push(phase('prepareRecords (JSON.stringify + SHA-256)', N, performance.now() - t));
    breakdown.push(
      await quietest('writer, new rows', async () => {
        // The records writer alone (batches encoded off the clock): COPY in one round trip per
        // write, queued batches written together, as a sync's first run writes them.
        await admin('TRUNCATE records');
        const batches: EncodedBatch[] = [];
        const writer = createRecordWriter(db, { connectionPk: pk, onCounts: () => sql`SELECT 1` });
        for (const part of prep) {
          const b = await writer.batch(BENCH_MODEL);
          for (const r of part) b.add(r);
          batches.push(b);
        }
        await settle();
        const w = await cpuWindow(dbName);
        const t0 = performance.now();
        for (const b of batches) await writer.save(b);
        await writer.flush();
        const p = phase(
          `records writer alone, new rows (${batches[0]?.encoding}, queued batches of ${BATCH} written together)`,
          N,
          performance.now() - t0,
          await w.end(),
        );
        if ((await count()) !== N) throw new Error('the writer did not write every record');
        return p;
      }),
    );
    // As the writer sends them to node-postgres: binary text[] parameters.
    const prepArrays = prep.map((p) => EncodedBatch.arrayParameters([EncodedBatch.of('arrays', pk, BENCH_MODEL, p)]));
    const upsertAll = async () => {
      for (const arrays of prepArrays) await db.transaction((tx) => upsertRecords(tx, pk, BENCH_MODEL, arrays));
    };
    breakdown.push(
      await quietest('upsert new', async () => {
        await admin('TRUNCATE records');
        await settle();
        const w = await cpuWindow(dbName);
        const t0 = performance.now();
        await upsertAll();
        return phase(`upsertRecords alone, new rows (${prep.length} transactions)`, N, performance.now() - t0, await w.end());
      }),
    );
    breakdown.push(
      await quietest('upsert unchanged', async () => {
        await settle();
        const w = await cpuWindow(dbName);
        const t0 = performance.now();
        await upsertAll();
        return phase(`upsertRecords alone, unchanged rows (${prep.length} transactions)`, N, performance.now() - t0, await w.end());
      }),
    );
  }

  await copyClient.end();
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor((xs.length - 1) / 2)]!;
  const rate = (pick: (r: (typeof rounds)[number]) => Phase) => median(rounds.map((r) => pick(r).recordsPerS));
  const ratioOf = (pick: (r: (typeof rounds)[number]) => Phase) =>
    median(rounds.map((r) => round3(pick(r).recordsPerS / r.copy.recordsPerS)));
  const ratios = rounds.map((r) => r.ratio);
  const summary = {
    rounds: ROUNDS,
    copyRecordsPerS: rate((r) => r.copy),
    syncEndToEnd: { recordsPerS: rate((r) => r.first), ratio: median(ratios), ratioPerRound: ratios },
    syncInsideBatchSave: { recordsPerS: rate((r) => r.firstSave), ratio: ratioOf((r) => r.firstSave) },
    unchangedResync: {
      recordsPerS: rate((r) => r.unchanged),
      insideBatchSaveRecordsPerS: rate((r) => r.unchangedSave),
      ratio: ratioOf((r) => r.unchanged),
    },
    changedResync: { recordsPerS: rate((r) => r.changed), ratio: ratioOf((r) => r.changed) },
    target: TARGET,
    meetsTarget: median(ratios) >= TARGET,
  };
  // Each phase against the COPY of its own round.
  const copyOfRound = (label: string) => rounds[Number(/^round (\d+)/.exec(label)?.[1] ?? 1) - 1]!.copy.recordsPerS;
  const ratio = (p: Phase) => round3(p.recordsPerS / copyOfRound(p.label));
  const table = markdownTable(
    ['phase', 'records/s', 'ms', 'ratio to COPY', 'this process cores', 'postgres cores', 'other cores'],
    phases.map((p) => [
      p.label,
      p.recordsPerS,
      p.ms,
      ratio(p),
      p.cpu?.processCores ?? '—',
      p.cpu?.postgresCores ?? '—',
      p.cpu?.otherCores ?? '—',
    ]),
  );
  const breakdownTable = markdownTable(
    ['step (alone)', 'records/s', 'ms', 'µs/record', 'postgres cores'],
    breakdown.map((p) => [p.label, p.recordsPerS, p.ms, round((p.ms * 1000) / p.records, 1), p.cpu?.postgresCores ?? '—']),
  );
  process.stdout.write(`\n${table}\n\n${breakdownTable}\n\n${JSON.stringify(summary, null, 2)}\n`);
  const out = path.join(resultsDir, arg('out', BATCH === 1000 ? 'ingest.json' : `ingest-batch${BATCH}.json`));
  writeFileSync(
    out,
    `${JSON.stringify(
      {
        command: commandLine(),
        date: new Date().toISOString(),
        machine: machine(),
        postgres: await postgresSettings(),
        code: codeVersion(),
        options: { records: N, batchSize: BATCH, rounds: ROUNDS, avgRecordBytes: avgBytes, queuePrefix: bench.config.queues.prefix },
        summary,
        phases,
        breakdown,
      },
      null,
      2,
    )}\n`,
  );
  say(`wrote ${path.relative(process.cwd(), out)}`);
  await bench.close();
  process.exit(0);
}

main().catch(async (err: unknown) => {
  say(`ingest bench failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.kill(process.pid, 'SIGTERM');
});
