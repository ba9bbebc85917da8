import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { processAlive } from '../src/lib/process.js';
import { createTestDatabase, type TestDatabase, usingPostgres } from './helpers/app.js';

/** Runs `terapi` the way `npm start` does, as a real process. */
function terapi(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', ...args], {
    cwd: path.resolve(import.meta.dirname, '..'),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: process.env.TEST_CHILD_LOG_LEVEL ?? 'warn', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const listening = async (): Promise<{ url: string; key: string | undefined }> => {
    for (let i = 0; i < 600; i++) {
      const m = /listening on (http:\/\/[\d.:]+)/.exec(stdout);
      if (m) return { url: m[1]!, key: /secret key:\s+(terapi_sk_\S+)/.exec(stdout)?.[1] };
      if (child.exitCode !== null) throw new Error(`terapi exited ${child.exitCode}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`terapi did not start: ${stdout} ${stderr}`);
  };
  return { child, exited, listening, out: () => stdout, err: () => stderr };
}

async function stop(child: ChildProcess, exited: Promise<number | null>) {
  child.kill('SIGTERM');
  return exited;
}

let dataDir: string;
beforeAll(async () => {
  dataDir = await mkdtemp(path.join(tmpdir(), 'terapi-cli-'));
});
afterAll(async () => rm(dataDir, { recursive: true, force: true }));

describe('terapi serve (embedded)', () => {
  it('starts with no setup, prints a working key, keeps data and key across restarts, stops on SIGTERM', async () => {
    const env = { PORT: '0', TERAPI_DATA_DIR: dataDir };
    const first = terapi(['serve'], env);
    const { url, key } = await first.listening();
    expect(key).toMatch(/^terapi_sk_/);
    expect((await fetch(`${url}/health`)).status).toBe(200);
    const created = await fetch(`${url}/integration`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({ provider_config_key: 'gh', provider: 'github' }),
    });
    expect(created.status).toBe(200);
    // initdb runs in a child process: its WASM memory (~630 MB, never given back) is not this process's.
    const status = await readFile(`/proc/${first.child.pid}/status`, 'utf8');
    const rssMb = Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1]) / 1024;
    expect(rssMb).toBeGreaterThan(0);
    expect(rssMb, 'resident memory after the first start').toBeLessThan(520);
    expect(await stop(first.child, first.exited)).toBe(0);
    await expect(fetch(`${url}/health`)).rejects.toThrow();

    for (const file of ['secret-key', 'encryption-key']) {
      expect((await stat(path.join(dataDir, file))).mode & 0o777, file).toBe(0o600);
    }

    const second = terapi([], env);
    const again = await second.listening();
    expect(again.key).toBe(key);
    const list = await fetch(`${again.url}/integration`, { headers: { authorization: `Bearer ${key}` } });
    const body = (await list.json()) as { integrations: { unique_key: string }[] };
    expect(body.integrations.map((i) => i.unique_key)).toEqual(['gh']);
    // The embedded redis-server kept its append-only file in the data directory and stopped with Terapi.
    const redisPid = Number(await readFile(path.join(dataDir, 'redis', 'redis.pid'), 'utf8').catch(() => '0'));
    expect((await stat(path.join(dataDir, 'redis', 'appendonlydir'))).isDirectory()).toBe(true);
    expect(await stop(second.child, second.exited)).toBe(0);
    await new Promise((r) => setTimeout(r, 200));
    expect(redisPid > 0 && processAlive(redisPid)).toBe(false);
  });

  it('uses TERAPI_SECRET_KEY when set', async () => {
    const key = `pinned_${randomBytes(16).toString('hex')}`;
    const dir = await mkdtemp(path.join(tmpdir(), 'terapi-cli-'));
    const p = terapi(['serve'], { PORT: '0', TERAPI_DATA_DIR: dir, TERAPI_SECRET_KEY: key });
    try {
      const { url } = await p.listening();
      expect(p.out()).toContain('from TERAPI_SECRET_KEY');
      expect(p.out()).not.toContain(key);
      expect((await fetch(`${url}/integration`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    } finally {
      await stop(p.child, p.exited);
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('graceful shutdown', () => {
  it('finishes a request in flight after SIGTERM, then exits 0', async () => {
    // A provider API that takes a second to answer the key check.
    const { createServer } = await import('node:http');
    const slow = createServer((_req, res) => setTimeout(() => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'), 1000));
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    const slowUrl = `http://127.0.0.1:${(slow.address() as { port: number }).port}`;
    const dir = await mkdtemp(path.join(tmpdir(), 'terapi-cli-'));
    const p = terapi(['serve'], {
      PORT: '0',
      TERAPI_DATA_DIR: dir,
      TERAPI_ALLOW_PROVIDER_URL_OVERRIDES: 'true',
      TERAPI_EGRESS_ALLOW_PRIVATE: 'true',
    });
    try {
      const { url, key } = await p.listening();
      const post = (route: string, body: unknown) =>
        fetch(`${url}${route}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
      expect((await post('/integration', { provider_config_key: 'sg', provider: 'sendgrid', api_base_url: slowUrl })).status).toBe(200);
      const inFlight = post('/connection', {
        connection_id: 'slow',
        provider_config_key: 'sg',
        credentials: { api_key: 'k' },
        verify: true,
      });
      await new Promise((r) => setTimeout(r, 300));
      p.child.kill('SIGTERM');
      const res = await inFlight;
      expect(res.status).toBe(200);
      expect(((await res.json()) as { id: string }).id).toBe('slow');
      const code = await p.exited;
      if (code !== 0) console.error(p.out(), p.err());
      expect(code).toBe(0);
      await expect(fetch(`${url}/health`)).rejects.toThrow();
    } finally {
      if (p.child.exitCode === null) p.child.kill('SIGKILL');
      await new Promise((r) => slow.close(r));
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('startup refusals', () => {
  it('names a bad variable and exits 1', async () => {
    const p = terapi(['serve'], { PORT: 'abc', TERAPI_DATA_DIR: dataDir });
    expect(await p.exited).toBe(1);
    expect(p.err()).toContain('PORT');
  });

  it('refuses an external database without an encryption key', async () => {
    const p = terapi(['serve'], { DATABASE_URL: 'postgres://postgres@127.0.0.1:5432/postgres', TERAPI_DATA_DIR: dataDir });
    expect(await p.exited).toBe(1);
    expect(p.err()).toContain('TERAPI_ENCRYPTION_KEY is required');
  });

  it('without a redis-server binary (and no REDIS_URL) says so and how to fix it', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'terapi-cli-'));
    try {
      const p = terapi(['serve'], { TERAPI_DATA_DIR: dir, PATH: '/nonexistent' });
      expect(await p.exited).toBe(1);
      expect(p.err()).toContain('redis-server');
      expect(p.err()).toContain('apt-get install redis-server');
      expect(p.err()).toContain('REDIS_URL');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('rejects an unknown role', async () => {
    const p = terapi(['fly'], {});
    expect(await p.exited).toBe(2);
    expect(p.err()).toContain('Unknown role');
  });
});

describe.runIf(usingPostgres)('terapi on Postgres (DATABASE_URL)', () => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
  });
  afterAll(async () => db?.drop());

  it('migrates, then serves with the key it printed once', async () => {
    const env = {
      DATABASE_URL: db.url!,
      TERAPI_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      TERAPI_DATA_DIR: dataDir,
      PORT: '0',
    };
    const migrate = terapi(['migrate'], env);
    expect(await migrate.exited).toBe(0);
    const p = terapi(['api'], env);
    try {
      const { url, key } = await p.listening();
      expect(p.out()).toContain('shown once');
      const ready = await (await fetch(`${url}/ready`)).json();
      expect(ready).toEqual({ status: 'ready', database: 'postgres', checks: { database: 'ok', redis: 'ok' } });
      expect((await fetch(`${url}/providers`, { headers: { authorization: `Bearer ${key}` } })).status).toBe(200);
    } finally {
      expect(await stop(p.child, p.exited)).toBe(0);
    }
  });
});

describe('terapi import', () => {
  it('streams a file to a running server in chunks and sums up; failures go to stderr or a file', async () => {
    const { createTestApp } = await import('./helpers/app.js');
    const t = await createTestApp();
    try {
      expect(
        (await t.call({ method: 'POST', url: '/integration', payload: { provider_config_key: 'sg', provider: 'sendgrid' } })).statusCode,
      ).toBe(200);
      await t.app.listen({ host: '127.0.0.1', port: 0 });
      const url = `http://127.0.0.1:${(t.app.server.address() as { port: number }).port}`;
      const lines = Array.from({ length: 25 }, (_, i) =>
        JSON.stringify({ provider_config_key: 'sg', connection_id: `cli-${i}`, credentials: { api_key: `SG.${i}` } }),
      );
      lines.splice(10, 0, '', JSON.stringify({ provider_config_key: 'sg', connection_id: 'cli-bad' }));
      const file = path.join(dataDir, 'connections.ndjson');
      await writeFile(file, `${lines.join('\n')}\n`);

      const run = (args: string[]) => {
        const p = terapi(['import', '--url', url, '--key', t.env.key, '--chunk', '10', ...args], {});
        return p.exited.then((code) => ({ code, out: p.out(), err: p.err() }));
      };
      const first = await run([file]);
      expect(first.out).toMatch(/imported 26 connections: 25 created, 0 updated, 1 failed/);
      // Line 12 of the file (after a blank line), named with its connection id and the missing field.
      expect(first.err).toMatch(/line 12 \(cli-bad\): invalid_request: credentials: required/);
      expect(first.code).toBe(1);
      const list = await t.call({ method: 'GET', url: '/connection?provider_config_key=sg&limit=100' });
      expect(list.json<{ connections: unknown[] }>().connections).toHaveLength(25);

      const failures = path.join(dataDir, 'failures.ndjson');
      const again = await run(['--failures', failures, file]);
      expect(again.out).toMatch(/25 updated, 1 failed \(.*\); failures in /);
      expect(again.err).toBe('');
      expect(
        (await readFile(failures, 'utf8'))
          .trim()
          .split('\n')
          .map((l) => JSON.parse(l) as unknown),
      ).toEqual([{ line: 12, connection_id: 'cli-bad', error: 'invalid_request', message: expect.stringContaining('credentials') }]);

      const wrongKey = await run([file, '--key', 'terapi_sk_wrong']);
      expect(wrongKey.code).toBe(1);
      expect(wrongKey.err).toMatch(/answered 401/);
      const usage = await run([]);
      expect(usage.code).toBe(2);
      expect(usage.err).toMatch(/no file given/);
    } finally {
      await t.close();
    }
  });
});
