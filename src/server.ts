import type { FastifyInstance } from 'fastify';
import type { Logger } from './lib/logger.js';

/**
 * Listens, and shuts down gracefully on SIGTERM/SIGINT: stop accepting, let in-flight requests
 * finish (bounded by `shutdownTimeoutMs`), then release resources. A second signal exits at once.
 */
export async function startServer(
  app: FastifyInstance,
  opts: { host: string; port: number; shutdownTimeoutMs: number; log: Logger; onShutdown: () => Promise<void> },
): Promise<string> {
  const address = await app.listen({ host: opts.host, port: opts.port });
  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) {
      opts.log.warn({ signal }, 'second signal: exiting now');
      process.exit(1);
    }
    stopping = true;
    opts.log.info({ signal }, 'shutting down: no new requests, finishing in-flight ones');
    const timer = setTimeout(() => {
      opts.log.error({ timeoutMs: opts.shutdownTimeoutMs }, 'shutdown timed out; exiting');
      process.exit(1);
    }, opts.shutdownTimeoutMs);
    timer.unref();
    // Connections that were busy when closing began become idle keep-alive sockets once their
    // response is out; close those as they appear, or the server would wait for the clients.
    const sweep = setInterval(() => app.server.closeIdleConnections(), 100);
    sweep.unref();
    try {
      await app.close();
      clearInterval(sweep);
      await opts.onShutdown();
      opts.log.info('stopped');
      process.exit(0);
    } catch (err) {
      opts.log.error({ err }, 'error during shutdown');
      process.exit(1);
    }
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
  return address;
}
