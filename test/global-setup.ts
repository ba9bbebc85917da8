import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { processAlive } from '../src/lib/process.js';

/**
 * One temporary directory for the whole test run, where each test file's embedded redis-server
 * keeps its data (test/helpers/app.ts). A test file's process can end without running its exit
 * handlers (vitest stops its workers), which would leave that redis-server running: at the end of
 * the run every one still alive under this directory is stopped, and the directory removed.
 */
export default async function setup(): Promise<() => Promise<void>> {
  const dir = await mkdtemp(path.join(tmpdir(), 'terapi-test-'));
  process.env.TERAPI_TEST_TMP = dir;
  return async () => {
    const pids: number[] = [];
    for (const entry of readdirSync(dir)) {
      const pidFile = path.join(dir, entry, 'redis', 'redis.pid');
      const pid = existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : 0;
      if (pid > 0 && processAlive(pid)) pids.push(pid);
    }
    for (const pid of pids) process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 50 && pids.some(processAlive); i++) await new Promise((r) => setTimeout(r, 100));
    await rm(dir, { recursive: true, force: true });
  };
}

