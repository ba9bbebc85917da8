import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTlsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createEgressFetch,
  EgressDeniedError,
  EgressHostNotFoundError,
  EgressNetworkError,
  EgressResponseTooLargeError,
  EgressTimeoutError,
  type HostLookup,
  isPrivateAddress,
  neverSent,
  type RetryInfo,
  withRetries,
} from '../../src/lib/egress.js';

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

interface TestServer {
  port: number;
  hits: { method: string; url: string; headers: IncomingMessage['headers']; body: string }[];
  close: () => Promise<void>;
}

/** A real HTTP server on 127.0.0.1 that records what it received. */
async function startServer(handler: Handler): Promise<TestServer> {
  const hits: TestServer['hits'] = [];
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      hits.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      handler(req, res, body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    hits,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

// Throwaway self-signed pair (CN=localhost) for the TLS test only; nothing trusts it, which is the point.
const TLS_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfuvU7oKaTW2Mbi9J
uZtBI3+xHrQvgRYG/GFv32fJy4uhRANCAASJabHIMdI6KzJE6rCV0Tc1q+5r99ay
b4e73Ea6QdkXkorh7LilovaWonp1lTac8+mPgl3JMYVROSHHCtOKbB5v
-----END PRIVATE KEY-----`;
const TLS_CERT = `-----BEGIN CERTIFICATE-----
MIIBmjCCAUGgAwIBAgIUTJGgSkOPYtXgBIaNg9fihiWc0agwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MCAXDTI2MTEyMzAzNDQ0OFoYDzIxMjYxMDMw
MDM0NDQ4WjAUMRIwEAYDVQQDDAlsb2NhbGhvc3QwWTATBgcqhkjOPQIBBggqhkjO
PQMBBwNCAASJabHIMdI6KzJE6rCV0Tc1q+5r99ayb4e73Ea6QdkXkorh7LilovaW
onp1lTac8+mPgl3JMYVROSHHCtOKbB5vo28wbTAdBgNVHQ4EFgQUcaEDGo4fMbAh
X1krhO1GN6u0/ZkwHwYDVR0jBBgwFoAUcaEDGo4fMbAhX1krhO1GN6u0/ZkwDwYD
VR0TAQH/BAUwAwEB/zAaBgNVHREEEzARgglsb2NhbGhvc3SHBH8AAAEwCgYIKoZI
zj0EAwIDRwAwRAIgE0ZRBVumQQHhb3C72i/NZATMMcubVDPlcy0+56kWxOMCIBm1
yNgJITY4AusNwAJXLC0tME85uUz4MxuWrHPSYA8h
-----END CERTIFICATE-----`;

const open = { allowPrivateNetworks: true };
const closed = { allowPrivateNetworks: false };

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error('expected a rejection');
}

describe('isPrivateAddress', () => {
  it.each([
    ['127.0.0.1', true],
    ['127.255.0.9', true],
    ['10.1.2.3', true],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['172.32.0.1', false],
    ['192.168.1.1', true],
    ['169.254.169.254', true],
    ['100.64.0.1', true],
    ['100.127.255.254', true],
    ['100.128.0.1', false],
    ['0.0.0.0', true],
    ['0.1.2.3', true],
    ['224.0.0.1', true],
    ['255.255.255.255', true],
    ['198.18.0.1', true],
    ['8.8.8.8', false],
    ['1.1.1.1', false],
    ['93.184.216.34', false],
    ['::1', true],
    ['::', true],
    ['::ffff:127.0.0.1', true],
    ['::ffff:7f00:1', true],
    ['::ffff:169.254.169.254', true],
    ['::ffff:8.8.8.8', false],
    ['64:ff9b::10.0.0.1', true],
    ['64:ff9b::8.8.8.8', false],
    ['2002:7f00:1::', true],
    ['2002:808:808::', false],
    ['fd00::1', true],
    ['fc00::1', true],
    ['fd00:ec2::254', true],
    ['fe80::1', true],
    ['fe80::1%eth0', true],
    ['febf::1', true],
    ['ff02::1', true],
    ['2001:db8::1', true],
    ['2001:4860::1', false],
    ['2001:4860:4860::8888', false],
    ['2606:4700:4700::1111', false],
    ['[::1]', true],
    ['not-an-address', true],
    ['', true],
  ])('%s → %s', (address, expected) => {
    expect(isPrivateAddress(address)).toBe(expected);
  });
});

describe('createEgressFetch', () => {
  let api: TestServer;
  let silent: TestServer;

  beforeAll(async () => {
    api = await startServer((req, res, body) => {
      const url = new URL(req.url ?? '/', 'http://x');
      switch (url.pathname) {
        case '/json':
          return json(res, 201, { ok: true, path: url.pathname, query: url.search }, { 'x-test': 'yes' });
        case '/echo':
          return json(res, 200, { method: req.method, contentType: req.headers['content-type'] ?? null, body });
        case '/big':
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '2000' });
          return res.end('x'.repeat(2000));
        case '/big-chunked':
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.write('y'.repeat(800));
          return res.end('y'.repeat(800));
        case '/gzip': {
          res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' });
          return res.end(gzipSync(JSON.stringify({ zipped: true })));
        }
        case '/stall':
          // headers and half a body, then silence: the deadline must cover the body too
          res.writeHead(200, { 'content-type': 'text/plain', 'content-length': '10' });
          return void res.write('12345');
        case '/no-content':
          res.writeHead(204);
          return res.end();
        case '/redirect':
          res.writeHead(302, { location: '/json?from=redirect' });
          return res.end('moved');
        case '/see-other':
          res.writeHead(303, { location: '/echo' });
          return res.end();
        case '/loop':
          res.writeHead(307, { location: '/loop' });
          return res.end();
        case '/to-ip':
          res.writeHead(302, { location: `http://127.0.0.1:${api.port}/json` });
          return res.end();
        case '/to-file':
          res.writeHead(302, { location: 'file:///etc/passwd' });
          return res.end();
        default:
          return json(res, 404, { error: 'not_found' });
      }
    });
    silent = await startServer(() => {
      // accepts the request and never answers
    });
  });

  afterAll(async () => {
    await api.close();
    await silent.close();
  });

  describe('policy', () => {
    it.each([
      ['http://127.0.0.1:1/', '127.0.0.1'],
      ['http://localhost:1/', '127.0.0.1'],
      ['http://169.254.169.254/latest/meta-data/', '169.254.169.254'],
      ['http://[::1]:1/', '::1'],
      ['http://[::ffff:127.0.0.1]:1/', '::ffff:7f00:1'],
      ['http://2130706433:1/', '127.0.0.1'],
      ['https://10.0.0.8/', '10.0.0.8'],
    ])('denies %s by default, without waiting for a timeout', async (url, address) => {
      const egress = createEgressFetch({ policy: closed, timeoutMs: 10_000 });
      const started = Date.now();
      const err = await rejection(egress(url));
      // Far below the 10 s timeout it must not wait for, with room for a loaded machine.
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(err).toBeInstanceOf(EgressDeniedError);
      expect((err as EgressDeniedError).code).toBe('egress_denied');
      expect((err as EgressDeniedError).address).toBe(address);
    });

    it('denies the real local server too, and the server never sees the request', async () => {
      const before = api.hits.length;
      const egress = createEgressFetch({ policy: closed });
      await expect(egress(`http://localhost:${api.port}/json`)).rejects.toBeInstanceOf(EgressDeniedError);
      await expect(egress(`http://127.0.0.1:${api.port}/json`)).rejects.toBeInstanceOf(EgressDeniedError);
      expect(api.hits.length).toBe(before);
    });

    it('refuses schemes other than http and https', async () => {
      const egress = createEgressFetch({ policy: open });
      await expect(egress('file:///etc/passwd')).rejects.toBeInstanceOf(EgressDeniedError);
      await expect(egress('ftp://example.com/')).rejects.toBeInstanceOf(EgressDeniedError);
    });

    it('lets the local server through with allowPrivateNetworks and returns a global Response', async () => {
      const egress = createEgressFetch({ policy: open, userAgent: 'terapi-test/1' });
      const res = await egress(`http://127.0.0.1:${api.port}/json?a=1`);
      expect(res).toBeInstanceOf(Response);
      expect(res.status).toBe(201);
      expect(res.statusText).toBe('Created');
      expect(res.ok).toBe(true);
      expect(res.headers.get('x-test')).toBe('yes');
      expect(res.url).toBe(`http://127.0.0.1:${api.port}/json?a=1`);
      expect(res.redirected).toBe(false);
      expect(await res.json()).toEqual({ ok: true, path: '/json', query: '?a=1' });
      expect(api.hits.at(-1)?.headers['user-agent']).toBe('terapi-test/1');
    });

    it('lets an allowed host through when it resolves privately', async () => {
      const egress = createEgressFetch({ policy: { allowPrivateNetworks: false, allowedHosts: ['localhost'] } });
      const res = await egress(`http://localhost:${api.port}/json`);
      expect(res.status).toBe(201);
      expect(await res.json()).toMatchObject({ ok: true });
      // the allow-list is by name: the same server by address stays denied
      await expect(egress(`http://127.0.0.1:${api.port}/json`)).rejects.toBeInstanceOf(EgressDeniedError);
    });
  });

  describe('requests and responses', () => {
    const egress = createEgressFetch({ policy: open });

    it('sends a form body with the form content-type', async () => {
      const res = await egress(`http://127.0.0.1:${api.port}/echo`, {
        method: 'POST',
        body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: 'r t' }),
      });
      expect(await res.json()).toEqual({
        method: 'POST',
        contentType: 'application/x-www-form-urlencoded;charset=UTF-8',
        body: 'grant_type=refresh_token&refresh_token=r+t',
      });
    });

    it('sends string and Buffer bodies, keeping the caller content-type', async () => {
      const asString = await egress(`http://127.0.0.1:${api.port}/echo`, {
        method: 'put',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ a: 1 }),
      });
      expect(await asString.json()).toEqual({ method: 'PUT', contentType: 'application/json', body: '{"a":1}' });
      const asBuffer = await egress(`http://127.0.0.1:${api.port}/echo`, { method: 'POST', body: Buffer.from('raw bytes') });
      expect(await asBuffer.json()).toEqual({ method: 'POST', contentType: null, body: 'raw bytes' });
    });

    it('accepts a Request as input', async () => {
      const req = new Request(`http://127.0.0.1:${api.port}/echo`, { method: 'POST', body: 'from request', headers: { 'x-a': 'b' } });
      const res = await egress(req);
      expect(await res.json()).toEqual({ method: 'POST', contentType: 'text/plain;charset=UTF-8', body: 'from request' });
      expect(api.hits.at(-1)?.headers['x-a']).toBe('b');
    });

    it('decodes gzip bodies', async () => {
      const res = await egress(`http://127.0.0.1:${api.port}/gzip`);
      expect(res.headers.get('content-encoding')).toBeNull();
      expect(await res.json()).toEqual({ zipped: true });
    });

    it('gives a null body for 204 and HEAD', async () => {
      const noContent = await egress(`http://127.0.0.1:${api.port}/no-content`, { method: 'DELETE' });
      expect(noContent.status).toBe(204);
      expect(noContent.body).toBeNull();
      const head = await egress(`http://127.0.0.1:${api.port}/json`, { method: 'HEAD' });
      expect(head.status).toBe(201);
      expect(head.body).toBeNull();
    });

    it('fails when the body exceeds maxResponseBytes, declared or streamed', async () => {
      const small = createEgressFetch({ policy: open, maxResponseBytes: 1_000 });
      const declared = await rejection(small(`http://127.0.0.1:${api.port}/big`));
      expect(declared).toBeInstanceOf(EgressResponseTooLargeError);
      const streamed = await rejection(small(`http://127.0.0.1:${api.port}/big-chunked`));
      expect(streamed).toBeInstanceOf(EgressResponseTooLargeError);
      const roomy = createEgressFetch({ policy: open, maxResponseBytes: 2_000 });
      expect((await (await roomy(`http://127.0.0.1:${api.port}/big`)).text()).length).toBe(2_000);
    });

    it('wraps connection failures without leaking headers, body or query', async () => {
      const gone = await startServer(() => undefined);
      const port = gone.port;
      await gone.close();
      const err = await rejection(
        egress(`http://127.0.0.1:${port}/x?api_key=query-secret`, {
          method: 'POST',
          headers: { authorization: 'Bearer header-secret' },
          body: 'body-secret',
        }),
      );
      expect(err).toBeInstanceOf(EgressNetworkError);
      const text = `${String(err)} ${(err as Error).stack ?? ''}`;
      for (const secret of ['query-secret', 'header-secret', 'body-secret']) expect(text).not.toContain(secret);
    });
  });

  describe('time', () => {
    it('times out a server that never answers, within about timeoutMs', async () => {
      const egress = createEgressFetch({ policy: open, timeoutMs: 300 });
      const started = Date.now();
      const err = await rejection(
        egress(`http://127.0.0.1:${silent.port}/hang?token=query-secret`, { headers: { authorization: 'Bearer header-secret' } }),
      );
      const elapsed = Date.now() - started;
      expect(err).toBeInstanceOf(EgressTimeoutError);
      expect((err as EgressTimeoutError).code).toBe('egress_timeout');
      expect(elapsed).toBeGreaterThanOrEqual(250);
      // A timeout that never fired would hang until vitest's net; this bound only has to tell "fired" from "hung".
      expect(elapsed).toBeLessThan(10_000);
      expect((err as Error).message).not.toMatch(/secret/);
    });

    it('times out a body that stalls after the headers', async () => {
      const egress = createEgressFetch({ policy: open, timeoutMs: 300 });
      const started = Date.now();
      await expect(egress(`http://127.0.0.1:${api.port}/stall`)).rejects.toBeInstanceOf(EgressTimeoutError);
      expect(Date.now() - started).toBeLessThan(10_000);
    });

    it('aborts on the caller signal', async () => {
      const egress = createEgressFetch({ policy: open, timeoutMs: 10_000 });
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const started = Date.now();
      const err = await rejection(egress(`http://127.0.0.1:${silent.port}/hang`, { signal: controller.signal }));
      expect((err as Error).name).toBe('AbortError');
      expect(Date.now() - started).toBeLessThan(5_000);
      await expect(egress(`http://127.0.0.1:${api.port}/json`, { signal: AbortSignal.abort() })).rejects.toMatchObject({
        name: 'AbortError',
      });
    });
  });

  describe('tls', () => {
    it('verifies certificates and sends the hostname as SNI', async () => {
      const names: string[] = [];
      const server = createTlsServer(
        {
          key: TLS_KEY,
          cert: TLS_CERT,
          SNICallback: (name, cb) => {
            names.push(name);
            cb(null);
          },
        },
        (_req, res) => res.end('should not be reached'),
      );
      server.listen(0, '127.0.0.1');
      await once(server, 'listening');
      try {
        const egress = createEgressFetch({ policy: open });
        const err = await rejection(egress(`https://localhost:${(server.address() as AddressInfo).port}/`));
        expect(err).toBeInstanceOf(EgressNetworkError);
        expect(((err as Error).cause as NodeJS.ErrnoException).code).toBe('DEPTH_ZERO_SELF_SIGNED_CERT');
        expect(names).toEqual(['localhost']);
      } finally {
        server.closeAllConnections();
        server.close();
      }
    });
  });

  describe('redirects', () => {
    it('returns a 3xx as is by default', async () => {
      const egress = createEgressFetch({ policy: open });
      const res = await egress(`http://127.0.0.1:${api.port}/redirect`);
      expect(res.status).toBe(302);
      expect(res.headers.get('location')).toBe('/json?from=redirect');
      expect(await res.text()).toBe('moved');
    });

    it('follows up to maxRedirects, then returns the last 3xx', async () => {
      const egress = createEgressFetch({ policy: open, maxRedirects: 2 });
      const res = await egress(`http://127.0.0.1:${api.port}/redirect`);
      expect(res.status).toBe(201);
      expect(res.redirected).toBe(true);
      expect(res.url).toBe(`http://127.0.0.1:${api.port}/json?from=redirect`);
      const before = api.hits.length;
      const loop = await egress(`http://127.0.0.1:${api.port}/loop`);
      expect(loop.status).toBe(307);
      expect(api.hits.length - before).toBe(3);
    });

    it('turns a POST into a GET on 303', async () => {
      const egress = createEgressFetch({ policy: open, maxRedirects: 1 });
      const res = await egress(`http://127.0.0.1:${api.port}/see-other`, { method: 'POST', body: 'payload' });
      expect(await res.json()).toEqual({ method: 'GET', contentType: null, body: '' });
    });

    it('re-checks every hop: a redirect to a denied address is denied', async () => {
      const egress = createEgressFetch({ policy: { allowPrivateNetworks: false, allowedHosts: ['localhost'] }, maxRedirects: 3 });
      const before = api.hits.length;
      const err = await rejection(egress(`http://localhost:${api.port}/to-ip`));
      expect(err).toBeInstanceOf(EgressDeniedError);
      expect((err as EgressDeniedError).address).toBe('127.0.0.1');
      expect(api.hits.slice(before).map((h) => h.url)).toEqual(['/to-ip']);
      await expect(egress(`http://localhost:${api.port}/to-file`)).rejects.toBeInstanceOf(EgressDeniedError);
    });

    it('drops credentials when a redirect changes origin', async () => {
      const egress = createEgressFetch({ policy: open, maxRedirects: 1 });
      const before = api.hits.length;
      await egress(`http://localhost:${api.port}/to-ip`, { headers: { authorization: 'Bearer t', 'x-keep': '1' } });
      const [first, second] = api.hits.slice(before);
      expect(first?.headers.authorization).toBe('Bearer t');
      expect(second?.headers.authorization).toBeUndefined();
      expect(second?.headers['x-keep']).toBe('1');
    });
  });
});

describe('withRetries', () => {
  let server: TestServer;
  const script: { status: number; headers?: Record<string, string> }[] = [];

  beforeAll(async () => {
    server = await startServer((_req, res) => {
      const next = script.shift() ?? { status: 200 };
      json(res, next.status, { status: next.status }, next.headers);
    });
  });
  afterAll(() => server.close());

  const egress = createEgressFetch({ policy: open });

  function recorder(): { delays: number[]; sleep: (ms: number) => Promise<void> } {
    const delays: number[] = [];
    return { delays, sleep: async (ms) => void delays.push(ms) };
  }

  function counted(fn: () => Promise<Response>): { attempt: () => Promise<Response>; count: () => number } {
    let n = 0;
    return {
      attempt: () => {
        n += 1;
        return fn();
      },
      count: () => n,
    };
  }

  const url = (): string => `http://127.0.0.1:${server.port}/`;

  it('honours Retry-After seconds on 503 until a 200', async () => {
    script.push({ status: 503, headers: { 'retry-after': '1' } }, { status: 503, headers: { 'retry-after': '1' } });
    const { delays, sleep } = recorder();
    const { attempt, count } = counted(() => egress(url()));
    const res = await withRetries(attempt, { retries: 5, sleep });
    expect(res.status).toBe(200);
    expect(count()).toBe(3);
    expect(delays).toEqual([1_000, 1_000]);
  });

  it('honours Retry-After on 429, as seconds or an HTTP date, capped by maxDelayMs', async () => {
    const date = new Date(Date.now() + 5_000).toUTCString();
    script.push(
      { status: 429, headers: { 'retry-after': '2' } },
      { status: 429, headers: { 'retry-after': date } },
      { status: 429, headers: { 'retry-after': '3600' } },
    );
    const { delays, sleep } = recorder();
    const res = await withRetries(() => egress(url()), { retries: 3, sleep, maxDelayMs: 8_000 });
    expect(res.status).toBe(200);
    expect(delays[0]).toBe(2_000);
    expect(delays[1]).toBeGreaterThan(3_000);
    expect(delays[1]).toBeLessThanOrEqual(5_000);
    expect(delays[2]).toBe(8_000);
  });

  it('honours RateLimit-Reset and X-RateLimit-Reset when rate limited', async () => {
    const epoch = Math.floor(Date.now() / 1000) + 4;
    script.push({ status: 429, headers: { 'ratelimit-reset': '3' } }, { status: 429, headers: { 'x-ratelimit-reset': String(epoch) } });
    const { delays, sleep } = recorder();
    const res = await withRetries(() => egress(url()), { retries: 2, sleep });
    expect(res.status).toBe(200);
    expect(delays[0]).toBe(3_000);
    expect(delays[1]).toBeGreaterThan(2_000);
    expect(delays[1]).toBeLessThanOrEqual(4_000);
  });

  it('backs off exponentially with full jitter when the server gives no hint', async () => {
    script.push({ status: 502 }, { status: 504 }, { status: 503, headers: { 'x-ratelimit-reset': '999' } });
    const { delays, sleep } = recorder();
    const res = await withRetries(() => egress(url()), { retries: 3, sleep, baseDelayMs: 100 });
    expect(res.status).toBe(200);
    expect(delays).toHaveLength(3);
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThan(100 * 2 ** i);
    });
  });

  it('does not retry a 400', async () => {
    script.push({ status: 400 });
    const { delays, sleep } = recorder();
    const { attempt, count } = counted(() => egress(url()));
    const res = await withRetries(attempt, { retries: 3, sleep });
    expect(res.status).toBe(400);
    expect(count()).toBe(1);
    expect(delays).toEqual([]);
  });

  it('returns the last 503 when retries run out', async () => {
    script.push(...Array.from({ length: 3 }, () => ({ status: 503, headers: { 'retry-after': '0' } })));
    const { delays, sleep } = recorder();
    const { attempt, count } = counted(() => egress(url()));
    const res = await withRetries(attempt, { retries: 2, sleep });
    expect(res.status).toBe(503);
    expect(await res.json()).toEqual({ status: 503 });
    expect(count()).toBe(3);
    expect(delays).toEqual([0, 0]);
  });

  it('retries a network error, and throws the last one when retries run out', async () => {
    const gone = await startServer(() => undefined);
    const deadUrl = `http://127.0.0.1:${gone.port}/`;
    await gone.close();

    const { delays, sleep } = recorder();
    const { attempt, count } = counted(() => (count() === 1 ? egress(deadUrl) : egress(url())));
    const res = await withRetries(attempt, { retries: 2, sleep });
    expect(res.status).toBe(200);
    expect(count()).toBe(2);
    expect(delays).toHaveLength(1);

    const always = counted(() => egress(deadUrl));
    await expect(withRetries(always.attempt, { retries: 2, sleep })).rejects.toBeInstanceOf(EgressNetworkError);
    expect(always.count()).toBe(3);

    const once = counted(() => egress(deadUrl));
    await expect(withRetries(once.attempt, { retries: 2, sleep, retryNetworkErrors: false })).rejects.toBeInstanceOf(EgressNetworkError);
    expect(once.count()).toBe(1);
  });

  it('never retries a request that cannot be built (a header value outside Latin-1)', async () => {
    const { delays, sleep } = recorder();
    const { attempt, count } = counted(() => egress(url(), { headers: { authorization: 'Bearer gho_\u2026' } }));
    await expect(withRetries(attempt, { retries: 3, sleep })).rejects.toBeInstanceOf(TypeError);
    expect(count()).toBe(1);
    expect(delays).toEqual([]);
  });

  it('never retries an EgressDeniedError', async () => {
    const denied = createEgressFetch({ policy: closed });
    const { delays, sleep } = recorder();
    const { attempt, count } = counted(() => denied(url()));
    await expect(withRetries(attempt, { retries: 3, sleep })).rejects.toBeInstanceOf(EgressDeniedError);
    expect(count()).toBe(1);
    expect(delays).toEqual([]);
  });

  describe('requests that are not idempotent', () => {
    it('are not sent again after a 5xx, nor after a timeout once connected', async () => {
      script.push({ status: 502 });
      const { delays, sleep } = recorder();
      const fiveXX = counted(() => egress(url(), { method: 'POST', body: '{}' }));
      expect((await withRetries(fiveXX.attempt, { retries: 3, sleep, idempotent: false })).status).toBe(502);
      expect(fiveXX.count()).toBe(1);

      const silent = await startServer(() => undefined);
      const slow = createEgressFetch({ policy: open, timeoutMs: 200 });
      const timedOut = counted(() => slow(`http://127.0.0.1:${silent.port}/`, { method: 'POST', body: '{}' }));
      const err = await rejection(withRetries(timedOut.attempt, { retries: 3, sleep, idempotent: false }));
      expect(err).toMatchObject({ code: 'egress_timeout', sent: true });
      expect(neverSent(err)).toBe(false);
      expect(timedOut.count()).toBe(1);
      expect(silent.hits).toHaveLength(1);
      await silent.close();
      expect(delays).toEqual([]);
    });

    it('are sent again after connection refused and after a 429, and every retry is reported', async () => {
      const gone = await startServer(() => undefined);
      const deadUrl = `http://127.0.0.1:${gone.port}/`;
      await gone.close();
      const { sleep } = recorder();
      const reports: RetryInfo[] = [];
      const refusedOnce = counted(() =>
        refusedOnce.count() === 1 ? egress(deadUrl, { method: 'POST' }) : egress(url(), { method: 'POST' }),
      );
      const res = await withRetries(refusedOnce.attempt, { retries: 3, sleep, idempotent: false, onRetry: (r) => reports.push(r) });
      expect(res.status).toBe(200);
      expect(refusedOnce.count()).toBe(2);

      script.push({ status: 429, headers: { 'retry-after': '2' } });
      const limited = counted(() => egress(url(), { method: 'POST' }));
      expect((await withRetries(limited.attempt, { retries: 3, sleep, idempotent: false, onRetry: (r) => reports.push(r) })).status).toBe(
        200,
      );
      expect(limited.count()).toBe(2);
      expect(reports).toEqual([
        { attempt: 1, maxAttempts: 4, error: 'ECONNREFUSED', delayMs: expect.any(Number) },
        { attempt: 1, maxAttempts: 4, status: 429, delayMs: 2_000 },
      ]);
    });

    it('a refused connection is marked as never sent; an answered one is not', async () => {
      const gone = await startServer(() => undefined);
      await gone.close();
      const refused = await rejection(egress(`http://127.0.0.1:${gone.port}/`));
      expect(refused).toMatchObject({ code: 'egress_network_error', errno: 'ECONNREFUSED', sent: false });
      const reset = await startServer((req) => req.socket.destroy());
      const cut = await rejection(egress(`http://127.0.0.1:${reset.port}/`, { method: 'POST', body: 'x' }));
      expect(cut).toMatchObject({ code: 'egress_network_error', sent: true });
      expect(neverSent(cut)).toBe(false);
      await reset.close();
    });
  });

  describe('DNS', () => {
    const answering =
      (fail: (host: string) => string | undefined): HostLookup =>
      async (host) => {
        const code = fail(host);
        if (code) throw Object.assign(new Error(`getaddrinfo ${code} ${host}`), { code });
        return [{ address: '127.0.0.1', family: 4 }];
      };

    it('a name that does not exist fails at once, is never retried, and says which host', async () => {
      let lookups = 0;
      const nx = createEgressFetch({ policy: open, lookup: answering(() => (lookups++, 'ENOTFOUND')) });
      const { delays, sleep } = recorder();
      const err = await rejection(withRetries(() => nx(`http://nonexistent.invalid:${server.port}/`), { retries: 5, sleep }));
      expect(err).toBeInstanceOf(EgressHostNotFoundError);
      expect((err as Error).message).toBe('the host nonexistent.invalid does not exist (DNS has no such name)');
      expect(lookups).toBe(1);
      expect(delays).toEqual([]);
    });

    it('a resolver that does not answer (EAI_AGAIN) is retried briefly, even for a POST', async () => {
      let lookups = 0;
      const flaky = createEgressFetch({ policy: open, lookup: answering(() => (lookups++ < 1 ? 'EAI_AGAIN' : undefined)) });
      const { sleep } = recorder();
      expect(
        (
          await withRetries(() => flaky(`http://api.example.test:${server.port}/`, { method: 'POST' }), {
            retries: 5,
            sleep,
            idempotent: false,
          })
        ).status,
      ).toBe(200);
      expect(lookups).toBe(2);

      let down = 0;
      const dead = createEgressFetch({ policy: open, lookup: answering(() => (down++, 'EAI_AGAIN')) });
      const err = await rejection(withRetries(() => dead(`http://api.example.test:${server.port}/`), { retries: 8, sleep }));
      expect(err).toMatchObject({ errno: 'EAI_AGAIN', sent: false });
      expect(down).toBe(3);
    });
  });

  it('stops when its signal aborts, also during a real sleep', async () => {
    script.push({ status: 503, headers: { 'retry-after': '5' } });
    const controller = new AbortController();
    const { attempt, count } = counted(() => egress(url()));
    setTimeout(() => controller.abort(), 100);
    const started = Date.now();
    await expect(withRetries(attempt, { retries: 3, signal: controller.signal })).rejects.toMatchObject({ name: 'AbortError' });
    // Below the 5 s Retry-After sleep it must cut short.
    expect(Date.now() - started).toBeLessThan(4_000);
    expect(count()).toBe(1);
    script.length = 0;
  });
});
