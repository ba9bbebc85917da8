import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type OAuthServer, startOAuthServer } from '../fixtures/oauth-server.js';
import { createTestApp, createTestDatabase, type TestApp, type TestDatabase, usingPostgres } from '../helpers/app.js';
import { obtainTokens, tokenWorks } from '../helpers/oauth.js';
import { DEFAULT_CLIENT } from '../fixtures/oauth-server.js';

/**
 * The refresh race across processes: on PostgreSQL, two real `terapi api` processes; on the
 * embedded database (one process only by nature), two app instances with separate caches and
 * in-flight maps, listening on their own ports, sharing the database.
 */
interface Node {
  url: string;
  stop(): Promise<void>;
}

let server: OAuthServer;
const nodes: Node[] = [];
let key: string;
const cleanup: (() => Promise<void>)[] = [];

async function spawnApi(env: Record<string, string>): Promise<Node> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts', 'api'], {
    cwd: path.resolve(import.meta.dirname, '../..'),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', LOG_LEVEL: 'warn', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  for (let i = 0; i < 600; i++) {
    const m = /listening on (http:\/\/[\d.:]+)/.exec(out);
    if (m) {
      return {
        url: m[1]!,
        stop: () =>
          new Promise<void>((resolve) => {
            child.once('exit', () => resolve());
            child.kill('SIGTERM');
          }),
      };
    }
    if (child.exitCode !== null) throw new Error(`terapi exited: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`terapi did not start: ${out}`);
}

beforeAll(async () => {
  server = await startOAuthServer();
  if (usingPostgres) {
    const db: TestDatabase = await createTestDatabase();
    cleanup.push(() => db.drop());
    key = `race_${randomBytes(16).toString('hex')}`;
    const env = {
      DATABASE_URL: db.url!,
      TERAPI_ENCRYPTION_KEY: randomBytes(32).toString('base64'),
      TERAPI_SECRET_KEY: key,
      TERAPI_EGRESS_ALLOW_PRIVATE: 'true',
    };
    // Start one first so the bootstrap (first environment) is not raced by the second.
    nodes.push(await spawnApi(env));
    nodes.push(await spawnApi(env));
  } else {
    const a: TestApp = await createTestApp();
    const b: TestApp = await createTestApp({ db: a.db, vault: a.vault });
    key = a.env.key;
    for (const t of [a, b]) {
      const url = await t.app.listen({ host: '127.0.0.1', port: 0 });
      nodes.push({ url, stop: () => t.app.close() });
    }
    cleanup.push(() => a.close());
  }
});

afterAll(async () => {
  for (const n of nodes) await n.stop().catch(() => undefined);
  for (const c of cleanup) await c();
  await server?.close();
});

const call = (node: Node, method: string, url: string, body?: unknown) =>
  fetch(`${node.url}${url}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body ? { 'content-type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });

describe('refresh race across processes', () => {
  it('200 concurrent requests on an expired token cause exactly one refresh grant, and all get the new token', async () => {
    const created = await call(nodes[0]!, 'POST', '/integration', {
      provider_config_key: 'race',
      provider: 'oauth2',
      oauth_client_id: DEFAULT_CLIENT.client_id,
      oauth_client_secret: DEFAULT_CLIENT.client_secret,
      authorization_url: server.authorizationUrl,
      token_url: server.tokenUrl,
    });
    expect(created.status).toBe(200);
    const initial = await obtainTokens(server);
    const imported = await call(nodes[1]!, 'POST', '/connection', {
      connection_id: 'racer',
      provider_config_key: 'race',
      credentials: {
        access_token: initial.access_token,
        refresh_token: initial.refresh_token,
        expires_at: new Date(Date.now() - 1000).toISOString(),
      },
    });
    expect(imported.status).toBe(200);
    server.resetCounters();

    const started = performance.now();
    const responses = await Promise.all(
      Array.from({ length: 200 }, async (_, i) => {
        const res = await call(nodes[i % 2]!, 'GET', '/auth/token/race/racer');
        return { status: res.status, body: (await res.json()) as { access_token: string } };
      }),
    );
    const allServedMs = performance.now() - started;

    expect(responses.map((r) => r.status)).toEqual(Array(200).fill(200));
    const tokens = new Set(responses.map((r) => r.body.access_token));
    expect(tokens.size).toBe(1);
    expect(server.grants.attempts.refresh_token).toBe(1);
    expect(server.grants.refresh_token).toBe(1);
    const [newToken] = [...tokens];
    expect(newToken).not.toBe(initial.access_token);
    expect(await tokenWorks(server, newToken!)).toBe(true);

    // The rotated refresh token was stored: the chain continues from either process.
    for (const node of nodes) {
      const forced = await call(node, 'GET', '/auth/token/race/racer?force_refresh=true');
      expect(forced.status).toBe(200);
      expect(await tokenWorks(server, ((await forced.json()) as { access_token: string }).access_token)).toBe(true);
    }
    expect(server.grants.refresh_token).toBe(3);
    // Reported in bench/README.md: time from "token expired" to "all waiters served".
    console.info(
      `refresh race: 200 requests over 2 ${usingPostgres ? 'processes' : 'app instances'} served in ${allServedMs.toFixed(0)} ms`,
    );
  });
});
