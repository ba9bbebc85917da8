import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    pool: 'forks',
    // Safety nets for a hung test, not budgets: tests wait for events (test/helpers/syncs.ts `until`), and a
    // loaded 2-core machine may take minutes where a quiet one takes seconds.
    testTimeout: 300_000,
    hookTimeout: 300_000,
    // Each file has its own database; two at a time matches the 2-core CI machine.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
