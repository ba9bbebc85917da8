import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { Redis } from 'ioredis';

/** Below this share of the limit, a process counts requests locally and tells Redis in the background. */
const LOCAL_SHARE = 0.5;

/** Adds ARGV[1] to the window's counter, starting the window (ARGV[2] ms) if it is new; returns {count, ttl ms}. */
const incrementScript = `
local count = redis.call('INCRBY', KEYS[1], ARGV[1])
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  ttl = tonumber(ARGV[2])
end
return {count, ttl}`;

type Counting = Redis & { terapiRateLimit(key: string, add: number, windowMs: number): Promise<[number, number]> };

interface Window {
  /** The window's count in Redis when this process last heard it (every process's requests). */
  known: number;
  /** This process's requests not yet added in Redis. */
  pending: number;
  resetAt: number;
  synced: boolean;
}

/**
 * A store for @fastify/rate-limit whose counters live in Redis (fixed windows shared by every API
 * process) without a Redis round trip per request: the first request of a window in a process and
 * every request past half the limit count in Redis at once (exact near the limit); below that, the
 * process counts locally and adds its count to Redis every `syncMs`. Other processes' requests of
 * the last `syncMs` are the only thing a process can miss, and only while far below the limit.
 */
export function sharedCounterStore(redis: Redis, opts: { prefix: string; syncMs: number }) {
  const client = redis as Counting;
  if (!('terapiRateLimit' in client)) redis.defineCommand('terapiRateLimit', { numberOfKeys: 1, lua: incrementScript });
  const windows = new Map<string, Window>();
  let timer: NodeJS.Timeout | undefined;

  async function add(key: string, w: Window, windowMs: number): Promise<{ current: number; ttl: number }> {
    const n = w.pending;
    w.pending = 0;
    try {
      const [count, ttl] = await client.terapiRateLimit(opts.prefix + key, n, windowMs);
      w.known = Math.max(w.known, count);
      w.resetAt = Date.now() + ttl;
      w.synced = true;
      return { current: count, ttl };
    } catch (err) {
      w.pending += n;
      throw err;
    }
  }

  function syncAll(windowMs: number) {
    timer = undefined;
    const now = Date.now();
    for (const [key, w] of windows) {
      if (w.resetAt <= now) windows.delete(key);
      else if (w.pending > 0) add(key, w, windowMs).catch(() => undefined); // retried at the next sync
    }
    if (windows.size > 0) schedule(windowMs);
  }

  function schedule(windowMs: number) {
    timer ??= setTimeout(() => syncAll(windowMs), opts.syncMs).unref();
  }

  const store: FastifyRateLimitStore = {
    incr(key, callback, windowMs, max) {
      const now = Date.now();
      let w = windows.get(key);
      if (!w || w.resetAt <= now) {
        w = { known: 0, pending: 0, resetAt: now + windowMs, synced: false };
        windows.set(key, w);
      }
      w.pending++;
      const estimate = w.known + w.pending;
      if (w.synced && estimate <= max * LOCAL_SHARE) {
        schedule(windowMs);
        callback(null, { current: estimate, ttl: w.resetAt - now });
        return;
      }
      add(key, w, windowMs).then(
        (result) => callback(null, result),
        (err: Error) => callback(err),
      );
    },
    child: () => store,
  };

  return {
    /** The class @fastify/rate-limit instantiates; every instance is this one store. */
    Store: function SharedCounterStore() {
      return store;
    } as unknown as FastifyRateLimitStoreCtor,
    close() {
      clearTimeout(timer);
      timer = undefined;
    },
  };
}
