import { readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * The dependency rules of DESIGN.md, read from the source itself: domains (the folders of src/)
 * depend on each other without cycles, repositories never reach into services or routes, and
 * services never import routes. `import type` is left out: it is erased at build time, and a
 * service is meant to name the narrowed type of a dependency it receives from services.ts.
 */
const srcDir = path.resolve(import.meta.dirname, '../../src');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

interface Import {
  from: string;
  to: string;
}

const importPattern = /(?:^|\n)\s*(?:import|export)\s(?!type\s)[^;]*?from\s+'(\.[^']+)'/g;

function imports(): Import[] {
  return sourceFiles(srcDir).flatMap((file) =>
    [...readFileSync(file, 'utf8').matchAll(importPattern)].map((m) => ({
      from: path.relative(srcDir, file),
      to: path.relative(srcDir, path.resolve(path.dirname(file), m[1]!)).replace(/\.js$/, '.ts'),
    })),
  );
}

/** The domain of a file: its first folder under src/ (files at the top are the composition root). */
const domainOf = (file: string): string | null => (file.includes('/') ? file.split('/')[0]! : null);

/** Strongly connected components of a directed graph (Tarjan); a component of two or more is a cycle. */
function cycles(graph: Map<string, Set<string>>): string[][] {
  let index = 0;
  const stack: string[] = [];
  const state = new Map<string, { index: number; low: number; onStack: boolean }>();
  const found: string[][] = [];
  const visit = (node: string): void => {
    const s = { index, low: index, onStack: true };
    index++;
    state.set(node, s);
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      const n = state.get(next);
      if (!n) {
        visit(next);
        s.low = Math.min(s.low, state.get(next)!.low);
      } else if (n.onStack) s.low = Math.min(s.low, n.index);
    }
    if (s.low === s.index) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        state.get(member)!.onStack = false;
        component.push(member);
      } while (member !== node);
      if (component.length > 1) found.push(component.sort());
    }
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return found;
}

describe('source layout', () => {
  const all = imports();

  it('reads the imports of the whole source tree', () => {
    // Guards the parser: if it stopped matching, every other assertion here would pass vacuously.
    expect(all.length).toBeGreaterThan(200);
    expect(all).toContainEqual({ from: 'app.ts', to: 'http/errors.ts' });
  });

  it('has no import cycle between domains', () => {
    const graph = new Map<string, Set<string>>();
    const witnesses = new Map<string, string>();
    for (const { from, to } of all) {
      const a = domainOf(from);
      const b = domainOf(to);
      if (!a || !b || a === b) continue;
      if (!graph.has(a)) graph.set(a, new Set());
      graph.get(a)!.add(b);
      witnesses.set(`${a}->${b}`, `${from} -> ${to}`);
    }
    const report = cycles(graph).map((component) => ({
      domains: component,
      edges: [...witnesses]
        .filter(([edge]) => component.includes(edge.split('->')[0]!) && component.includes(edge.split('->')[1]!))
        .map(([, w]) => w),
    }));
    expect(report).toEqual([]);
  });

  it('keeps repositories below services and routes, and services below routes', () => {
    const kind = (file: string) => path.basename(file, '.ts');
    const wrong = all.filter(({ from, to }) => {
      const a = kind(from);
      const b = kind(to);
      if (a === 'repository') return b === 'service' || b.endsWith('routes');
      if (a === 'service') return b.endsWith('routes');
      return false;
    });
    expect(wrong).toEqual([]);
  });

  it("reaches other domains' data through the services it is given, not through their repositories", () => {
    // runs/ and events/ are stores with no service of their own: the sync and action runners write
    // run rows, and every domain writes its webhook events in the transaction of the change they report.
    // The composition root (src/*.ts) wires repositories into services, so it is not a domain here.
    const sharedStores = new Set(['runs', 'events']);
    const wrong = all.filter(({ from, to }) => {
      const target = domainOf(to);
      const source = domainOf(from);
      return source !== null && path.basename(to) === 'repository.ts' && target !== source && !sharedStores.has(target ?? '');
    });
    expect(wrong).toEqual([]);
  });
});
