import type { FastifyInstance } from 'fastify';
import { type Logger, redactUrl } from '../lib/logger.js';

/**
 * One access line per request, written when the response is done:
 * `{"reqId","method","url","route","status","ms","msg":"request"}`.
 *
 * Fastify's own request logging writes two lines per request (incoming, completed), each with a
 * `req`/`res` object that pino walks with every redaction path: at the default level that halved
 * the throughput of the hottest routes. Every field here is a string or number Terapi chose (the
 * URL's query string has its credentials replaced, as in every log line), so this line goes
 * through a child logger without redaction paths. Routes keep their `logLevel` (probes log at
 * `warn`, so they write no access line).
 */
export function registerAccessLog(app: FastifyInstance, logger: Logger): void {
  // Redaction is per logger; this one only ever receives the fields below.
  const access = logger.child({}, { redact: [] });
  app.addHook('onResponse', (req, reply, done) => {
    if ((req.log as Logger).isLevelEnabled('info')) {
      access.info(
        {
          reqId: req.id,
          method: req.method,
          url: redactUrl(req.url),
          route: req.routeOptions.url,
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 100) / 100,
        },
        'request',
      );
    }
    done();
  });
}
