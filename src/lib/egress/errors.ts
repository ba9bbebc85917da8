/** Errors of the egress client; messages name the origin only, never headers or bodies. */
export abstract class EgressError extends Error {
  abstract readonly code: string;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

export class EgressDeniedError extends EgressError {
  readonly code = 'egress_denied';
  constructor(
    readonly host: string,
    readonly address: string,
    readonly reason: string,
  ) {
    super(`egress to ${host}${address && address !== host ? ` (${address})` : ''} denied: ${reason}`);
  }
}

export class EgressTimeoutError extends EgressError {
  readonly code = 'egress_timeout';
  constructor(
    readonly origin: string,
    readonly timeoutMs: number,
    /** false when no connection to the server was ever established: the request cannot have reached it */
    readonly sent = true,
  ) {
    super(sent ? `request to ${origin} timed out after ${timeoutMs} ms` : `connecting to ${origin} timed out after ${timeoutMs} ms`);
  }
}

export class EgressResponseTooLargeError extends EgressError {
  readonly code = 'egress_response_too_large';
  constructor(origin: string, maxBytes: number) {
    super(`response from ${origin} exceeds ${maxBytes} bytes`);
  }
}

/** The host name does not exist in DNS (NXDOMAIN): retrying will not help, the URL is wrong. */
export class EgressHostNotFoundError extends EgressError {
  readonly code = 'egress_host_not_found';
  readonly sent = false;
  constructor(readonly host: string) {
    super(`the host ${host} does not exist (DNS has no such name)`);
  }
}

/** Node's codes for a header value it cannot send (its messages quote the value, which may be a token). */
export const INVALID_HEADER_CODES: ReadonlySet<string> = new Set([
  'ERR_HTTP_INVALID_HEADER_VALUE',
  'ERR_INVALID_CHAR',
  'ERR_INVALID_HTTP_TOKEN',
]);

export class EgressNetworkError extends EgressError {
  readonly code = 'egress_network_error';
  /** The system error code (ECONNREFUSED, ECONNRESET, EAI_AGAIN, …) when there is one. */
  readonly errno: string | undefined;
  /** false when no connection to the server was ever established: the request cannot have reached it. */
  readonly sent: boolean;
  constructor(message: string, options: ErrorOptions & { errno?: string; sent?: boolean } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.errno = options.errno;
    this.sent = options.sent ?? true;
  }
}

/**
 * True when the request provably never reached the server: the name did not resolve or no
 * connection was established (refused, unreachable, timed out while connecting). Only then may a
 * request that is not idempotent be sent again without risking a second write.
 */
export function neverSent(err: unknown): boolean {
  return (
    err instanceof EgressDeniedError ||
    err instanceof EgressHostNotFoundError ||
    ((err instanceof EgressNetworkError || err instanceof EgressTimeoutError) && !err.sent)
  );
}

/** The reason an aborted signal carries, as an Error. */
export function abortReason(signal: AbortSignal): Error {
  const reason: unknown = signal.reason;
  if (reason instanceof Error) return reason;
  return reason === undefined
    ? new DOMException('This operation was aborted', 'AbortError')
    : new Error(typeof reason === 'string' ? reason : JSON.stringify(reason));
}
