import pino, { type DestinationStream, type Logger } from 'pino';

/**
 * Paths pino replaces with "[redacted]". Request logs carry no headers or bodies by default; these
 * cover objects a handler or error might log. A test greps the logs for known secrets.
 */
export const redactPaths = [
  'req.headers.authorization',
  'req.headers.cookie',
  'headers.authorization',
  'authorization',
  '*.authorization',
  'secret_key',
  '*.secret_key',
  '*.secretKey',
  '*.access_token',
  '*.refresh_token',
  '*.client_secret',
  '*.oauth_client_secret',
  '*.api_key',
  '*.apiKey',
  '*.password',
  '*.secrets',
  '*.credentials',
  'credentials',
];

/** Query parameters that carry one-time credentials (connect links, OAuth callbacks). */
const sensitiveQuery = new Set(['session_token', 'connect_session_token', 'code', 'state', 'token']);

/**
 * The request URL with one-time credentials replaced. Names are compared decoded, as the router
 * decodes them (`session%5Ftoken` is `session_token`).
 */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  let changed = false;
  for (const name of new Set(params.keys())) {
    if (sensitiveQuery.has(name.toLowerCase())) {
      params.set(name, '[redacted]');
      changed = true;
    }
  }
  return changed ? `${url.slice(0, q + 1)}${params.toString()}` : url;
}

interface LoggedRequest {
  method?: string;
  url?: string;
  host?: string;
  hostname?: string;
  ip?: string;
  socket?: { remotePort?: number };
}

export function createLogger(opts: { level: string; pretty?: boolean; destination?: DestinationStream }): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level,
    base: { service: 'terapi' },
    redact: { paths: redactPaths, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    serializers: {
      req: (req: LoggedRequest) => ({
        method: req.method,
        url: req.url ? redactUrl(req.url) : req.url,
        host: req.host ?? req.hostname,
        remoteAddress: req.ip,
      }),
    },
  };
  if (opts.destination) return pino(options, opts.destination);
  if (opts.pretty) return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  return pino(options);
}

export type { Logger };
