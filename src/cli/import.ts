import { createReadStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';

/** `terapi import`: sends a file of connections to a server's bulk import, in chunks, and sums up. */
export const importUsage = `Usage: terapi import [--url <server>] [--key <secret key>] [--webhooks] [--chunk <n>] [--failures <file>] <file.ndjson|file.json>

  <file>       NDJSON (one connection per line) or a JSON array (.json), each item the body of POST /connections
  --url        server URL (default: TERAPI_SERVER_URL, else http://127.0.0.1:3003)
  --key        the environment's secret key (default: TERAPI_SECRET_KEY)
  --webhooks   send the auth webhook for every imported connection (off by default)
  --chunk      items per request (default 5000, at most 100000)
  --failures   write the failed items' results to this file (NDJSON) instead of stderr`;

interface ImportArgs {
  file: string;
  url: string;
  key: string;
  webhooks: boolean;
  chunk: number;
  failures?: string;
}

interface ItemResult {
  index: number;
  connection_id: string | null;
  status: 'created' | 'updated' | 'error';
  error?: string;
  message?: string;
}

export class UsageError extends Error {}

/** Parses `import` arguments; defaults come from the server's own configuration. */
export function parseImportArgs(argv: string[], defaults: { url: string; key?: string }): ImportArgs {
  const out: Partial<ImportArgs> = { url: defaults.url, key: defaults.key, webhooks: false, chunk: 5000 };
  const value = (i: number, name: string) => {
    const v = argv[i + 1];
    if (v === undefined || v.startsWith('--')) throw new UsageError(`${name} needs a value`);
    return v;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--url') out.url = value(i++, a);
    else if (a === '--key') out.key = value(i++, a);
    else if (a === '--failures') out.failures = value(i++, a);
    else if (a === '--chunk') {
      out.chunk = Number(value(i++, a));
      if (!Number.isInteger(out.chunk) || out.chunk < 1 || out.chunk > 100_000) throw new UsageError('--chunk must be 1 to 100000');
    } else if (a === '--webhooks') out.webhooks = true;
    else if (a.startsWith('--')) throw new UsageError(`unknown option ${a}`);
    else if (out.file) throw new UsageError('give one file');
    else out.file = a;
  }
  if (!out.file) throw new UsageError('no file given');
  if (!out.key) throw new UsageError('no secret key: pass --key or set TERAPI_SECRET_KEY');
  return out as ImportArgs;
}

/** The file's items as NDJSON lines, with their 1-based line (NDJSON) or position (JSON array). */
async function* itemsOf(file: string): AsyncGenerator<{ line: string; at: number }> {
  if (file.endsWith('.json')) {
    const parsed: unknown = JSON.parse(await readFile(file, 'utf8'));
    if (!Array.isArray(parsed)) throw new UsageError(`${file} is not a JSON array`);
    let at = 0;
    for (const item of parsed) yield { line: JSON.stringify(item), at: ++at };
    return;
  }
  let at = 0;
  for await (const line of createInterface({ input: createReadStream(file), crlfDelay: Infinity })) {
    at++;
    if (line.trim()) yield { line, at };
  }
}

/** Runs the import; returns the process exit code (0: every item imported, 1: some failed). */
export async function runImportCommand(
  args: ImportArgs,
  out: { stdout: (s: string) => void; stderr: (s: string) => void },
): Promise<number> {
  const started = performance.now();
  const url = `${args.url.replace(/\/+$/, '')}/connections/import?webhooks=${args.webhooks}`;
  const totals = { created: 0, updated: 0, failed: 0 };
  const failures: string[] = [];
  const unit = args.file.endsWith('.json') ? 'item' : 'line';

  const send = async (chunk: { line: string; at: number }[]) => {
    const res = await fetch(url, {
      method: 'POST',
      headers: { authorization: `Bearer ${args.key}`, 'content-type': 'application/x-ndjson' },
      body: `${chunk.map((c) => c.line).join('\n')}\n`,
    });
    const text = await res.text();
    if (res.status !== 200) {
      throw new Error(
        `the server answered ${res.status} for ${unit}s ${chunk[0]!.at}-${chunk[chunk.length - 1]!.at}: ${text.slice(0, 500)}`,
      );
    }
    const body = JSON.parse(text) as { created: number; updated: number; failed: number; results: ItemResult[] };
    totals.created += body.created;
    totals.updated += body.updated;
    totals.failed += body.failed;
    for (const r of body.results) {
      if (r.status !== 'error') continue;
      const at = chunk[r.index]?.at;
      const line = JSON.stringify({ [unit]: at, connection_id: r.connection_id, error: r.error, message: r.message });
      if (args.failures) failures.push(line);
      else out.stderr(`${unit} ${at}${r.connection_id ? ` (${r.connection_id})` : ''}: ${r.error}: ${r.message}\n`);
    }
  };

  let chunk: { line: string; at: number }[] = [];
  for await (const item of itemsOf(args.file)) {
    chunk.push(item);
    if (chunk.length >= args.chunk) {
      await send(chunk);
      chunk = [];
    }
  }
  if (chunk.length) await send(chunk);
  if (args.failures) await writeFile(args.failures, failures.map((l) => `${l}\n`).join(''));

  const seconds = (performance.now() - started) / 1000;
  const total = totals.created + totals.updated + totals.failed;
  out.stdout(
    `imported ${total} connections: ${totals.created} created, ${totals.updated} updated, ${totals.failed} failed ` +
      `(${seconds.toFixed(1)} s, ${Math.round(total / Math.max(seconds, 0.001))}/s)` +
      (totals.failed && args.failures ? `; failures in ${args.failures}` : '') +
      '\n',
  );
  return totals.failed ? 1 : 0;
}
