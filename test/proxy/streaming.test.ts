/**
 * The proxy streams both ways on a real port: a 200 MB download and a 200 MB upload pass while
 * this process's memory (app, fake provider and client together) stays flat, and a provider that
 * drops the socket mid-body makes the caller's body end short, never look whole.
 */
import { createHash } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createTestApp, type TestApp } from '../helpers/app.js';
import { pattern, startProxyTarget, type ProxyTarget } from '../fixtures/providers/proxy-target.js';

const SIZE = 200 * 1024 * 1024;
const CHUNK = pattern(64 * 1024);
// Growth of the whole test process allowed while 200 MB pass: buffering would cost 200 MB+.
const MAX_RSS_GROWTH = 64 * 1024 * 1024;

let t: TestApp;
let target: ProxyTarget;
let port: number;

beforeAll(async () => {
  target = await startProxyTarget();
  t = await createTestApp({ config: { allowProviderUrlOverrides: true, proxy: { timeoutMs: 5000, bodyLimitBytes: 300 * 1024 * 1024 } } });
  const i = await t.call({
    method: 'POST',
    url: '/integration',
    payload: { provider_config_key: 'files', provider: 'github', api_base_url: target.url },
  });
  expect(i.statusCode, i.body).toBe(200);
  const c = await t.call({
    method: 'POST',
    url: '/connection',
    payload: { provider_config_key: 'files', connection_id: 'u', credentials: { type: 'OAUTH2', access_token: 'tok' } },
  });
  expect(c.statusCode, c.body).toBe(200);
  await t.app.listen({ host: '127.0.0.1', port: 0 });
  port = (t.app.server.address() as AddressInfo).port;
});
afterAll(async () => {
  await t?.close();
  await target?.close();
});

/** Peak RSS growth over the baseline while `run` goes on. */
async function peakGrowth<T>(run: () => Promise<T>): Promise<{ result: T; growth: number }> {
  global.gc?.();
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => (peak = Math.max(peak, process.memoryUsage.rss())), 20);
  try {
    const result = await run();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, growth: peak - base };
  } finally {
    clearInterval(timer);
  }
}

const headers = (extra: Record<string, string> = {}) => ({
  authorization: `Bearer ${t.env.key}`,
  'connection-id': 'u',
  'provider-config-key': 'files',
  ...extra,
});

function expectedHash(size: number): string {
  const hash = createHash('sha256');
  for (let left = size; left > 0; left -= CHUNK.length) hash.update(left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left));
  return hash.digest('hex');
}

it('a 200 MB download streams with flat memory', async () => {
  const { result, growth } = await peakGrowth(
    () =>
      new Promise<{ status: number; length: string | undefined; bytes: number; sha256: string }>((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path: `/proxy/bytes/${SIZE}`, headers: headers() }, (res) => {
          const hash = createHash('sha256');
          let bytes = 0;
          res.on('data', (c: Buffer) => {
            bytes += c.length;
            hash.update(c);
          });
          res.on('end', () =>
            resolve({ status: res.statusCode ?? 0, length: res.headers['content-length'], bytes, sha256: hash.digest('hex') }),
          );
          res.on('error', reject);
        });
        req.on('error', reject);
        req.end();
      }),
  );
  expect(result.status).toBe(200);
  expect(result.length).toBe(String(SIZE));
  expect(result.bytes).toBe(SIZE);
  expect(result.sha256).toBe(expectedHash(SIZE));
  expect(growth, `RSS grew ${Math.round(growth / 1048576)} MB`).toBeLessThan(MAX_RSS_GROWTH);
}, 120_000);

it('a 200 MB upload streams with flat memory', async () => {
  const { result, growth } = await peakGrowth(
    () =>
      new Promise<{ status: number; body: { bytes: number; sha256: string } }>((resolve, reject) => {
        const req = httpRequest(
          {
            host: '127.0.0.1',
            port,
            method: 'PUT',
            path: '/proxy/echo/upload',
            headers: headers({ 'content-type': 'application/octet-stream', 'content-length': String(SIZE) }),
          },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as { bytes: number; sha256: string } }));
            res.on('error', reject);
          },
        );
        req.on('error', reject);
        let left = SIZE;
        const pump = (): void => {
          while (left > 0) {
            const part = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
            left -= part.length;
            if (!req.write(part)) return void req.once('drain', pump);
          }
          req.end();
        };
        pump();
      }),
  );
  expect(result.status).toBe(200);
  expect(result.body.bytes).toBe(SIZE);
  expect(result.body.sha256).toBe(expectedHash(SIZE));
  expect(growth, `RSS grew ${Math.round(growth / 1048576)} MB`).toBeLessThan(MAX_RSS_GROWTH);
}, 120_000);

it('a provider dropping the socket mid-body ends the caller body short', async () => {
  const outcome = await new Promise<{ status: number; bytes: number; complete: boolean; error?: string }>((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: '/proxy/drop', headers: headers() }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete }));
      res.on('error', (err) => resolve({ status: res.statusCode ?? 0, bytes, complete: res.complete, error: err.message }));
    });
    req.on('error', (err) => resolve({ status: 0, bytes: 0, complete: false, error: err.message }));
    req.end();
  });
  expect(outcome.status).toBe(200);
  expect(outcome.complete).toBe(false);
  expect(outcome.bytes).toBeLessThan(100_000);
});
