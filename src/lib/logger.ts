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

export function createLogger(opts: { level: string; pretty?: boolean; destination?: DestinationStream }): Logger {
  const options: pino.LoggerOptions = {
    level: opts.level,
    base: { service: 'terapi' },
    redact: { paths: redactPaths, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  if (opts.destination) return pino(options, opts.destination);
  if (opts.pretty) return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } });
  return pino(options);
}

export type { Logger };
