/**
 * Seeds a scale database, then measures it: `npm run bench:scale -- [flags]`. Every flag goes to
 * both steps (each reads its own): bench/scale/seed.ts (sizes, --db) and bench/scale/measure.ts.
 *
 *   npm run bench:scale -- --connections=100k --records=1m --runs=500k --db=terapi_scale_small   # the small version
 *   npm run bench:scale                                                                          # full size: 1M / 10M / 5M
 */
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
for (const script of ['seed.ts', 'measure.ts']) {
  const r = spawnSync(process.execPath, ['--import', 'tsx', path.join(here, script), ...process.argv.slice(2)], { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
