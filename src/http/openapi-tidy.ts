import { isDeepStrictEqual } from 'node:util';

type Json = Record<string, unknown>;

/**
 * The zod transform registers every named schema twice (`X` for responses, `XInput` for
 * requests). Where both are the same, or only one of them is used, keep one component under the
 * plain name (the names of seed 001: `CreateIntegrationRequest`, `Connection`, …) and drop
 * components nothing refers to.
 */
export function tidyOpenApi<T extends object>(doc: T): T {
  const d = doc as Json & { components?: { schemas?: Record<string, unknown> } };
  const schemas = d.components?.schemas;
  if (!schemas) return doc;

  const refsIn = (value: unknown, out = new Set<string>()): Set<string> => {
    if (Array.isArray(value)) for (const v of value) refsIn(v, out);
    else if (value && typeof value === 'object') {
      for (const [k, v] of Object.entries(value)) {
        if (k === '$ref' && typeof v === 'string') out.add(v.replace('#/components/schemas/', ''));
        else refsIn(v, out);
      }
    }
    return out;
  };
  const renames = new Map<string, string>();
  const used = refsIn({ ...d, components: undefined });
  for (const name of Object.keys(schemas)) {
    if (!name.endsWith('Input')) continue;
    const plain = name.slice(0, -'Input'.length);
    if (!(plain in schemas)) continue;
    if (isDeepStrictEqual(schemas[plain], schemas[name]) || !used.has(plain)) {
      if (!used.has(plain)) schemas[plain] = schemas[name];
      renames.set(name, plain);
      delete schemas[name];
    }
  }
  const rename = (value: unknown): unknown => {
    if (Array.isArray(value)) return value.map(rename);
    if (!value || typeof value !== 'object') return value;
    return Object.fromEntries(
      Object.entries(value).map(([k, v]) => {
        if (k === '$ref' && typeof v === 'string') {
          const target = renames.get(v.replace('#/components/schemas/', ''));
          return [k, target ? `#/components/schemas/${target}` : v];
        }
        return [k, rename(v)];
      }),
    );
  };
  const renamed = rename(d) as typeof d;
  // Drop components that nothing reaches (following refs between components too).
  const reachable = new Set<string>();
  const queue = [...refsIn({ ...renamed, components: undefined })];
  while (queue.length) {
    const name = queue.pop()!;
    if (reachable.has(name)) continue;
    reachable.add(name);
    queue.push(...refsIn(renamed.components!.schemas![name]));
  }
  for (const name of Object.keys(renamed.components!.schemas!)) if (!reachable.has(name)) delete renamed.components!.schemas![name];
  return renamed as T;
}
