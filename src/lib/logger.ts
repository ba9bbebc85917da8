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

/**
 * Query parameters that carry credentials: one-time ones (connect links, OAuth callbacks) and the
 * keys a client may put in the query string instead of a header. Names are compared lowercased
 * without `_` and `-`, so `api_key`, `api-key` and `apiKey` are one name.
 */
const sensitiveQuery = new Set([
  'code',
  'state',
  'key',
  'apikey',
  'hapikey',
  'accesskey',
  'secretkey',
  'privatekey',
  'auth',
  'authorization',
  'signature',
  'sig',
]);
/** Any name containing one of these is a credential too (`access_token`, `client_secret`, `x_auth_token`, …). */
const sensitiveQueryPart = /token|secret|passw|credential|session/;

const isSensitiveQuery = (name: string) => {
  const n = name.toLowerCase().replace(/[-_]/g, '');
  return sensitiveQuery.has(n) || sensitiveQueryPart.test(n);
};

/**
 * The request URL with credentials in its query string replaced. Names are compared decoded, as
 * the router decodes them (`session%5Ftoken` is `session_token`).
 */
export function redactUrl(url: string): string {
  const q = url.indexOf('?');
  if (q < 0) return url;
  const params = new URLSearchParams(url.slice(q + 1));
  let changed = false;
  for (const name of new Set(params.keys())) {
    if (isSensitiveQuery(name)) {
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
  if (opts.destination) return withCheapPrimitiveChildren(pino(options, opts.destination));
  if (opts.pretty)
    return withCheapPrimitiveChildren(pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true } } }));
  return withCheapPrimitiveChildren(pino(options));
}

const { chindingsSym, serializersSym, stringifiersSym } = pino.symbols;
type Internals = Record<symbol, unknown>;

/**
 * Fastify makes a child logger per request (`{ reqId }`), and pino passes every child binding
 * through the wildcard redaction paths (`*.authorization`, …): about 1.7 µs per request, most of
 * the logger's cost on the hot routes, although a string, number or boolean has no property to
 * redact. For bindings that are all such primitives, under keys that no top-level redact path
 * (`authorization`, `credentials`, …) and no serializer names, this child appends them the way
 * pino would (`,"key":<JSON>`); any other binding goes through pino's own `child`, redaction and
 * all. Output and redaction stay the same: only the useless work is skipped.
 */
function withCheapPrimitiveChildren(root: Logger): Logger {
  // pino's own child, called later with the logger it is asked on (`.call(this, …)`).
  // eslint-disable-next-line @typescript-eslint/unbound-method -- bound at the call
  const pinoChild = root.child as unknown as (this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) => Logger;
  const noBindings = {};
  function child(this: Logger, bindings: pino.Bindings, options?: pino.ChildLoggerOptions) {
    // Options that change how bindings are written (own redaction, formatters, serializers): pino's way.
    if (!bindings || (options && (options.redact !== undefined || options.formatters !== undefined || options.serializers !== undefined))) {
      return pinoChild.call(this, bindings, options);
    }
    const self = this as unknown as Internals;
    const stringifiers = self[stringifiersSym] as Record<string, unknown> | undefined;
    const serializers = self[serializersSym] as Record<string, unknown>;
    let appended = '';
    for (const key in bindings) {
      if (!Object.hasOwn(bindings, key)) continue;
      const value: unknown = bindings[key];
      if (value === undefined) continue;
      if (
        (typeof value !== 'string' && typeof value !== 'number' && typeof value !== 'boolean') ||
        stringifiers?.[key] !== undefined ||
        serializers[key] !== undefined ||
        key === 'level' ||
        key === 'serializers' ||
        key === 'formatters' ||
        key === 'customLevels'
      ) {
        return pinoChild.call(this, bindings, options);
      }
      appended += `,${JSON.stringify(key)}:${JSON.stringify(value)}`;
    }
    const instance = pinoChild.call(this, noBindings, options) as unknown as Internals;
    instance[chindingsSym] = (instance[chindingsSym] as string) + appended;
    return instance as unknown as Logger;
  }
  root.child = child as unknown as Logger['child'];
  return root;
}

export type { Logger };
