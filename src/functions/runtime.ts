import type { Db } from '../db/client.js';
import type { LogLevel } from '../db/schema/index.js';
import type { ConnectionWithIntegration } from '../connections/repository.js';
import type { ConnectionLookup } from '../connections/service.js';
import type { IntegrationLookup } from '../integrations/service.js';
import type { Logger } from '../lib/logger.js';
import { apiBaseUrl } from '../providers/template.js';
import type { Catalog } from '../providers/catalog.js';
import { credentialHeaders } from '../providers/placement.js';
import { insertRunLogs, type LogLine } from '../runs/repository.js';
import type { TokenService } from '../tokens/service.js';
import type { FunctionContextBase, RunLogger } from './define.js';
import { createProviderHttp } from './http.js';

const MAX_LOG_LINES = 5000;
const MAX_LOG_MESSAGE = 2000;

export interface RunLog extends RunLogger {
  /** Writes buffered lines to the run's log. */
  flush(): Promise<void>;
}

/**
 * A run's logger: lines are buffered and written to `run_logs` in batches (at most
 * MAX_LOG_LINES per run, then one line saying the rest was dropped), and mirrored at debug level
 * to the process log.
 */
export function createRunLog(db: Db, runId: string, log: Logger): RunLog {
  let buffer: LogLine[] = [];
  let written = 0;
  let dropped = 0;
  let pending: Promise<void> = Promise.resolve();
  const write = (level: LogLevel, message: string, data?: Record<string, unknown>) => {
    log.debug({ runId, ...data }, message);
    if (written + buffer.length >= MAX_LOG_LINES) {
      dropped++;
      return;
    }
    buffer.push({ level, message: message.slice(0, MAX_LOG_MESSAGE), data, at: new Date() });
    if (buffer.length >= 100) void flush();
  };
  function flush(): Promise<void> {
    const lines = buffer;
    buffer = [];
    if (dropped && written + lines.length >= MAX_LOG_LINES) {
      lines.push({ level: 'warn', message: `log limit of ${MAX_LOG_LINES} lines reached: ${dropped} more lines were dropped` });
      dropped = 0;
    }
    written += lines.length;
    pending = pending
      .then(() => insertRunLogs(db, runId, lines))
      .catch((err: unknown) => log.warn({ err, runId }, 'could not write run log lines'));
    return pending;
  }
  return {
    info: (m, d) => write('info', m, d),
    warn: (m, d) => write('warn', m, d),
    error: (m, d) => write('error', m, d),
    flush,
  };
}

export type FunctionRuntime = ReturnType<typeof createFunctionRuntime>;

/** Builds what every function gets: the connection, its HTTP client, metadata and logger. */
export function createFunctionRuntime(deps: {
  db: Db;
  catalog: Catalog;
  tokens: TokenService;
  connections: Pick<ConnectionLookup, 'findById'>;
  integrations: Pick<IntegrationLookup, 'findById'>;
  fetch: typeof fetch;
  retries: number;
}) {
  const { catalog, tokens } = deps;

  async function baseUrlOf(conn: ConnectionWithIntegration): Promise<string> {
    const provider = catalog.get(conn.provider);
    const integration = await deps.integrations.findById(conn.environmentId, conn.integrationId);
    if (!provider) throw new Error(`provider ${conn.provider} is not in the catalog`);
    return apiBaseUrl(provider, integration?.urlOverrides ?? {}, conn.connectionConfig);
  }

  return {
    async context(conn: ConnectionWithIntegration, signal: AbortSignal, log: RunLogger): Promise<FunctionContextBase> {
      const provider = catalog.get(conn.provider);
      if (!provider) throw new Error(`provider ${conn.provider} is not in the catalog`);
      const http = createProviderHttp({
        fetch: deps.fetch,
        baseUrl: await baseUrlOf(conn),
        signal,
        log,
        retries: deps.retries,
        async credentials(force) {
          const { credentials } = await tokens.getToken(conn.environmentId, conn.providerConfigKey, conn.connectionId, {
            force,
            cached: !force,
          });
          const refreshable = credentials.type === 'OAUTH2_CC' || (credentials.type === 'OAUTH2' && Boolean(credentials.refresh_token));
          return { ...credentialHeaders(provider, credentials), refreshable };
        },
      });
      return {
        connection: {
          connectionId: conn.connectionId,
          providerConfigKey: conn.providerConfigKey,
          provider: conn.provider,
          connectionConfig: { ...conn.connectionConfig },
        },
        http,
        async getMetadata<T>() {
          const [current] = await deps.connections.findById([conn.id]);
          return structuredClone(current?.metadata ?? {}) as T;
        },
        log,
        signal,
      };
    },
  };
}
