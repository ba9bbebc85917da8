import type { Db } from '../db/client.js';
import type { Logger } from '../lib/logger.js';
import type { AuthFlows } from '../oauth/flow.js';
import type { Catalog } from '../providers/catalog.js';
import { listDueForRefresh } from './repository.js';
import type { TokenService } from './service.js';

const DAY = 86_400;
/** Providers that rotate refresh tokens without saying when idle ones die: renew weekly. */
const ROTATING_DEFAULT_IDLE_SECONDS = 7 * DAY;

/**
 * Keeps connections alive that nobody reads: renews OAuth tokens that expire soon, and renews
 * refresh tokens of providers that revoke idle ones (at half their idle lifetime) so a connection
 * untouched for weeks still works. Tokens with neither an expiry nor a refresh token are left
 * alone. Every worker may run this; the per-connection lease keeps refreshes single.
 */
export function createBackgroundRefresher(deps: {
  db: Db;
  catalog: Catalog;
  tokens: TokenService;
  /** Expired connect sessions and OAuth attempts are deleted on the same tick. */
  flows: Pick<AuthFlows, 'deleteExpired'>;
  log: Logger;
  marginSeconds: number;
  intervalSeconds: number;
  batchSize?: number;
}) {
  const idlePolicies = deps.catalog
    .list()
    .filter((p) => p.refresh_token_idle_expiry_days || p.refresh_token_rotation)
    .map((p) => ({
      provider: p.name,
      maxIdleSeconds: p.refresh_token_idle_expiry_days ? (p.refresh_token_idle_expiry_days * DAY) / 2 : ROTATING_DEFAULT_IDLE_SECONDS,
    }));
  // Look ahead past the next tick, so no token expires between two runs.
  const horizonSeconds = deps.marginSeconds + 2 * deps.intervalSeconds;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;

  async function runOnce(): Promise<{ refreshed: number; failed: number; skipped: number }> {
    const counts = { refreshed: 0, failed: 0, skipped: 0 };
    const due = await listDueForRefresh(deps.db, { horizonSeconds, idlePolicies, limit: deps.batchSize ?? 200 });
    // A few at a time: enough to keep up, without a burst against one provider.
    for (let i = 0; i < due.length; i += 4) {
      const results = await Promise.all(due.slice(i, i + 4).map((d) => deps.tokens.refreshById(d.id)));
      for (const r of results) counts[r]++;
    }
    await deps.flows.deleteExpired();
    if (due.length) deps.log.info({ ...counts, due: due.length }, 'background token refresh');
    return counts;
  }

  return {
    runOnce,
    start() {
      if (deps.intervalSeconds <= 0 || timer) return;
      timer = setInterval(() => {
        if (running) return;
        running = runOnce()
          .catch((err: unknown) => deps.log.error({ err }, 'background token refresh failed'))
          .finally(() => (running = undefined));
      }, deps.intervalSeconds * 1000);
      timer.unref();
    },
    async stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}
