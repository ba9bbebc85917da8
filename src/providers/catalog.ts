import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import { z } from 'zod';
import { type Provider, providerSchema } from './schema.js';

export interface Catalog {
  list(): readonly Provider[];
  get(name: string): Provider | undefined;
}

export const defaultCatalogFile = fileURLToPath(new URL('./catalog.yaml', import.meta.url));

/** Names of the generic providers whose URLs each integration supplies. */
export const genericProviders = new Set(['oauth2', 'oauth2-cc']);

/** Loads and validates the provider catalog; a bad entry stops startup with its name and field. */
export function loadCatalog(file = defaultCatalogFile): Catalog {
  const entries = z.array(z.unknown()).parse(parse(readFileSync(file, 'utf8')));
  const providers = entries.map((entry, i) => {
    const parsed = providerSchema.safeParse(entry);
    if (!parsed.success) {
      const name = (entry as { name?: unknown })?.name ?? `#${i}`;
      const issues = parsed.error.issues.map((x) => `${x.path.join('.')}: ${x.message}`).join('; ');
      throw new Error(`provider catalog ${file}: entry ${JSON.stringify(name)}: ${issues}`);
    }
    return Object.freeze(parsed.data);
  });
  const byName = new Map(providers.map((p) => [p.name, p]));
  if (byName.size !== providers.length) throw new Error(`provider catalog ${file}: duplicate provider names`);
  providers.sort((a, b) => a.name.localeCompare(b.name));
  return { list: () => providers, get: (name) => byName.get(name) };
}
