/**
 * Summarizes a V8 .cpuprofile (from bench/server.ts with BENCH_CPU_PROFILE, or `node --cpu-prof`):
 * top self-time functions, and time per component (pg driver, drizzle, zod, fastify, pino, Node core, …).
 *
 *   npx tsx bench/profile-summary.ts bench/results/postgres.cpuprofile
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Share {
  name: string;
  ms: number;
  /** Share of busy (non-idle) time. */
  pct: number;
}
export interface ProfileSummary {
  file: string;
  wallMs: number;
  busyMs: number;
  idleMs: number;
  samples: number;
  /** Self time by the component of the function itself; builtins/natives (no script URL) separate. */
  byComponentSelf: Share[];
  /** Self time where builtins (JSON.stringify, RegExp, Date, …) and Node core frames are charged to the nearest package/app caller. */
  byComponentCharged: Share[];
  /** Share of busy samples with at least one frame of the component on the stack (overlapping, not additive). */
  onStack: Share[];
  topSelf: (Share & { component: string; where: string })[];
}

const PKG_COMPONENTS: [RegExp, string][] = [
  [
    /\/node_modules\/(pg|pg-protocol|pg-types|pg-pool|pg-connection-string|pgpass|postgres-(date|array|interval|bytea))\//,
    'pg driver (protocol, type parsing)',
  ],
  [/\/node_modules\/drizzle-orm\//, 'drizzle-orm (query building, result mapping)'],
  [/\/node_modules\/fastify-type-provider-zod\//, 'zod (validation + response serialization)'],
  [/\/node_modules\/zod\//, 'zod (validation + response serialization)'],
  [
    /\/node_modules\/(pino|pino-std-serializers|sonic-boom|fast-redact|@pinojs\/[^/]+|thread-stream|on-exit-leak-free|quick-format-unescaped|atomic-sleep|safe-stable-stringify|fast-safe-stringify)\//,
    'logging (pino)',
  ],
  [
    /\/node_modules\/(fastify|find-my-way|avvio|fast-querystring|fast-json-stringify|@fastify\/[^/]+|light-my-request|fast-decode-uri-component|safe-regex2|ret|toad-cache|process-warning|rfdc|abstract-logging|fast-uri|json-schema-ref-resolver|secure-json-parse|content-type|proxy-addr|forwarded|ipaddr\.js|semver|cookie|set-cookie-parser|fastq|reusify)\//,
    'fastify (routing, hooks, reply)',
  ],
  [/\/node_modules\/@electric-sql\/pglite\//, 'PGlite JS glue'],
  [/^wasm:\/\//, 'PGlite WASM (the Postgres engine itself)'],
  [/\/node_modules\/(tsx|esbuild|get-tsconfig)\//, 'tsx loader'],
];

function componentOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) {
    if (functionName === '(idle)') return '(idle)';
    if (functionName === '(garbage collector)') return 'GC';
    if (functionName === '(program)') return '(program: native, outside JS)';
    if (functionName === '(root)') return '(root)';
    return 'builtin/native';
  }
  for (const [re, name] of PKG_COMPONENTS) if (re.test(url)) return name;
  if (url.startsWith('node:')) return 'Node core (http, net, streams, timers, crypto)';
  if (/\/node_modules\//.test(url)) return `other: ${/\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url)![1]}`;
  if (/\/bench\//.test(url)) return 'bench harness (query-counting wrapper)';
  if (/\/src\//.test(url)) return 'terapi src (auth hook, service, toConnection, …)';
  return `other: ${url}`;
}

const isCharged = (c: string) => c === 'builtin/native' || c.startsWith('Node core');

function shares(map: Map<string, number>, busyMs: number): Share[] {
  return [...map.entries()]
    .map(([name, ms]) => ({ name, ms: Math.round(ms), pct: Math.round((ms / busyMs) * 1000) / 10 }))
    .sort((a, b) => b.ms - a.ms);
}

export function summarizeProfile(file: string): ProfileSummary {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) byId.set(n.id, n);
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);

  const comp = new Map<number, string>();
  for (const n of profile.nodes) comp.set(n.id, componentOf(n.callFrame));
  // Charged component: for builtins and Node core frames, the nearest ancestor from a package or the app.
  const charged = new Map<number, string>();
  const chargedOf = (id: number): string => {
    const known = charged.get(id);
    if (known) return known;
    const own = comp.get(id)!;
    let result = own;
    if (isCharged(own)) {
      let p = parent.get(id);
      while (p !== undefined && isCharged(comp.get(p)!)) p = parent.get(p);
      const pc = p === undefined ? '(root)' : comp.get(p)!;
      // No package caller: event-loop work in Node itself (HTTP parsing, socket reads, timers).
      result = pc === '(root)' || pc.startsWith('(') ? (own === 'builtin/native' ? 'builtin/native (no JS caller)' : own) : pc;
    }
    charged.set(id, result);
    return result;
  };
  // Components present on each node's stack (for the on-stack view).
  const stackComps = new Map<number, Set<string>>();
  const stackOf = (id: number): Set<string> => {
    const known = stackComps.get(id);
    if (known) return known;
    const p = parent.get(id);
    const set = new Set(p === undefined ? [] : stackOf(p));
    set.add(comp.get(id)!);
    stackComps.set(id, set);
    return set;
  };

  const selfUs = new Map<number, number>();
  let idleUs = 0;
  let totalUs = 0;
  const onStackUs = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i]!;
    // timeDeltas[i] is the time since the previous sample; charge the interval that ends at the next sample.
    const dt = Math.max(0, profile.timeDeltas[i + 1] ?? 0);
    totalUs += dt;
    if (comp.get(id) === '(idle)') {
      idleUs += dt;
      continue;
    }
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    for (const c of stackOf(id)) onStackUs.set(c, (onStackUs.get(c) ?? 0) + dt);
  }
  const busyUs = totalUs - idleUs;
  const busyMs = busyUs / 1000;

  const bySelf = new Map<string, number>();
  const byCharged = new Map<string, number>();
  const byFunction = new Map<string, { ms: number; component: string; where: string; name: string }>();
  for (const [id, us] of selfUs) {
    const node = byId.get(id)!;
    const c = comp.get(id)!;
    bySelf.set(c, (bySelf.get(c) ?? 0) + us / 1000);
    const ch = chargedOf(id);
    byCharged.set(ch, (byCharged.get(ch) ?? 0) + us / 1000);
    const f = node.callFrame;
    const where = f.url ? `${shortUrl(f.url)}:${f.lineNumber + 1}` : '(native)';
    // Builtins and Node core frames are listed per caller (e.g. writev from pg vs from the HTTP response).
    const shown = isCharged(c) && ch !== c ? `${c} ← ${ch}` : c;
    const key = `${f.functionName || '(anonymous)'} ${where} ${shown}`;
    const entry = byFunction.get(key) ?? { ms: 0, component: shown, where, name: f.functionName || '(anonymous)' };
    entry.ms += us / 1000;
    byFunction.set(key, entry);
  }
  onStackUs.delete('(root)');
  return {
    file,
    wallMs: Math.round(totalUs / 1000),
    busyMs: Math.round(busyMs),
    idleMs: Math.round(idleUs / 1000),
    samples: profile.samples.length,
    byComponentSelf: shares(bySelf, busyMs),
    byComponentCharged: shares(byCharged, busyMs),
    onStack: shares(new Map([...onStackUs].map(([k, v]) => [k, v / 1000])), busyMs),
    topSelf: [...byFunction.values()]
      .sort((a, b) => b.ms - a.ms)
      .slice(0, 30)
      .map((f) => ({
        name: f.name,
        component: f.component,
        where: f.where,
        ms: Math.round(f.ms),
        pct: Math.round((f.ms / busyMs) * 1000) / 10,
      })),
  };
}

function shortUrl(url: string): string {
  const nm = url.lastIndexOf('/node_modules/');
  if (nm >= 0) return url.slice(nm + '/node_modules/'.length);
  const src = url.indexOf('/src/');
  if (src >= 0) return url.slice(src + 1);
  return url.replace(/^file:\/\//, '');
}

export function formatSummary(s: ProfileSummary, top = 25): string {
  const lines: string[] = [];
  lines.push(`profile ${path.basename(s.file)}: ${s.samples} samples, wall ${s.wallMs} ms, busy ${s.busyMs} ms, idle ${s.idleMs} ms`);
  const table = (title: string, rows: Share[]) => {
    lines.push('', title);
    for (const r of rows.filter((x) => x.pct >= 0.1))
      lines.push(`  ${r.pct.toFixed(1).padStart(5)}%  ${String(r.ms).padStart(6)} ms  ${r.name}`);
  };
  table('Self time by component (% of busy time; builtins/natives separate):', s.byComponentSelf);
  table('Self time with builtins and Node core charged to their package/app caller:', s.byComponentCharged);
  table(
    'On stack (inclusive, overlapping):',
    s.onStack.filter((x) => !x.name.startsWith('(')),
  );
  lines.push('', `Top ${top} functions by self time:`);
  for (const f of s.topSelf.slice(0, top)) {
    lines.push(`  ${f.pct.toFixed(1).padStart(5)}%  ${String(f.ms).padStart(6)} ms  ${f.name}  [${f.component}]  ${f.where}`);
  }
  return lines.join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const files = process.argv.slice(2);
  if (!files.length) {
    process.stderr.write('usage: tsx bench/profile-summary.ts <file.cpuprofile>...\n');
    process.exit(2);
  }
  for (const f of files) process.stdout.write(`${formatSummary(summarizeProfile(f))}\n\n`);
}
