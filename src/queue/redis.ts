import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { StartupError } from '../lib/errors.js';
import type { Logger } from '../lib/logger.js';
import { processAlive } from '../lib/process.js';

/** How to reach Redis: a URL, or the unix socket of the embedded server. */
export type RedisTarget = { url: string } | { path: string };

export class RedisUnavailableError extends StartupError {}

/**
 * Error reporting for Redis clients that reconnect on their own (ioredis, BullMQ): a down Redis
 * emits an error per reconnect attempt and per queue, so the first error is logged at once, then
 * at most one line per `intervalMs` (with how many were left out), and the recovery once.
 */
export function createRedisErrorLog(log: Logger, opts: { message?: string; intervalMs?: number } = {}) {
  const message = opts.message ?? 'redis error; reconnecting';
  const intervalMs = opts.intervalMs ?? 60_000;
  let loggedAt = 0;
  let suppressed = 0;
  let failingSince: number | undefined;
  return {
    error(err: unknown, fields: Record<string, unknown> = {}) {
      const now = Date.now();
      failingSince ??= now;
      if (now - loggedAt < intervalMs) {
        suppressed++;
        return;
      }
      log.error({ err, ...fields, ...(suppressed && { suppressed }) }, message);
      loggedAt = now;
      suppressed = 0;
    },
    /** A client is (again) ready: logs the recovery if errors were seen. */
    ready() {
      if (failingSince === undefined) return;
      log.info({ downMs: Date.now() - failingSince, ...(suppressed && { suppressed }) }, 'redis connection restored');
      failingSince = undefined;
      loggedAt = 0;
      suppressed = 0;
    },
  };
}

/** A new ioredis client. Workers need `maxRetriesPerRequest: null` (blocking commands, BullMQ). */
export function createRedis(target: RedisTarget, opts: RedisOptions = {}): Redis {
  const base: RedisOptions = { lazyConnect: false, ...opts };
  return 'url' in target ? new Redis(target.url, base) : new Redis({ ...base, path: target.path });
}

export interface EmbeddedRedis {
  target: RedisTarget;
  stop(): Promise<void>;
}

async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new RedisUnavailableError(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/**
 * Stops an embedded redis-server left running under `dataDir` by a process that could not stop it
 * (killed, or ended without its exit handlers); its data is kept. Resolves once it is gone.
 */
export async function stopLeftoverEmbeddedRedis(dataDir: string, log?: Logger): Promise<void> {
  const stale = Number(readFileSafe(path.join(dataDir, 'redis', 'redis.pid')));
  if (!(stale > 0 && processAlive(stale))) return;
  log?.warn({ pid: stale }, 'stopping an embedded redis-server left running by an earlier Terapi process');
  process.kill(stale, 'SIGTERM');
  await waitFor(() => !processAlive(stale), 10_000, 'the old redis-server to stop');
}

/**
 * Starts `redis-server` as a child process with its data (append-only file) in `<dataDir>/redis`,
 * reachable only through a unix socket there, and stops it with `stop()` (or when this process exits).
 * A server left behind by a process that was killed is stopped first; its data is kept.
 */
export async function startEmbeddedRedis(opts: { dataDir: string; log?: Logger; binary?: string }): Promise<EmbeddedRedis> {
  const binary = opts.binary ?? 'redis-server';
  const probe = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new RedisUnavailableError(
      `Terapi needs Redis for its queues and "${binary}" was not found on PATH. ` +
        'Either install Redis (Debian/Ubuntu: `apt-get install redis-server`, macOS: `brew install redis`) so Terapi can start it for you, ' +
        'or set REDIS_URL to a Redis you run (e.g. redis://127.0.0.1:6379).',
    );
  }
  const dir = path.join(opts.dataDir, 'redis');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  let socket = path.join(dir, 'redis.sock');
  // Unix socket paths are limited to ~107 bytes; fall back to a short path in the OS temp dir.
  if (Buffer.byteLength(socket) > 100) socket = path.join('/tmp', `terapi-redis-${process.pid}-${Date.now()}.sock`);
  const pidFile = path.join(dir, 'redis.pid');

  await stopLeftoverEmbeddedRedis(opts.dataDir, opts.log);
  rmSync(socket, { force: true });

  const child: ChildProcess = spawn(
    binary,
    [
      '--port',
      '0',
      '--unixsocket',
      socket,
      '--unixsocketperm',
      '700',
      '--dir',
      dir,
      '--pidfile',
      pidFile,
      '--appendonly',
      'yes',
      '--appendfsync',
      'everysec',
      '--save',
      '',
      '--daemonize',
      'no',
      '--loglevel',
      'warning',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let output = '';
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-4000)));
  let exited = false;
  child.once('exit', () => (exited = true));
  const killOnExit = () => child.kill('SIGTERM');
  process.once('exit', killOnExit);

  const target = { path: socket };
  try {
    await waitFor(
      async () => {
        if (exited) throw new RedisUnavailableError(`redis-server exited at start:\n${output.trim()}`);
        const client = createRedis(target, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
        client.on('error', () => {}); // a refused probe is expected while it starts; the timeout reports failure
        try {
          await client.connect();
          return (await client.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          client.disconnect();
        }
      },
      15_000,
      'the embedded redis-server to accept connections',
    );
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  opts.log?.info({ socket, dir }, 'embedded redis-server started');

  return {
    target,
    async stop() {
      process.removeListener('exit', killOnExit);
      if (exited) return;
      const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await done;
      clearTimeout(timer);
    },
  };
}

function readFileSafe(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return '';
  }
}
