import type { FastifyInstance } from 'fastify';

/**
 * `(method, path)` of every route the app's router holds, undocumented ones included, read from
 * Fastify's `printRoutes({ commonPrefix: false })` tree: sweeps generated from it cover a new route
 * without anyone remembering to add it.
 */
export function routerRoutes(app: FastifyInstance): { method: string; path: string }[] {
  const out: { method: string; path: string }[] = [];
  const stack: string[] = [];
  for (const line of app.printRoutes({ commonPrefix: false }).split('\n')) {
    const m = /^([│ ]*)(?:├── |└── )(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    const full = (depth > 0 ? (stack[depth - 1] ?? '') : '') + m[2]!;
    stack[depth] = full;
    for (const method of m[3]?.split(',').map((x) => x.trim()) ?? []) out.push({ method, path: full });
  }
  return out;
}
