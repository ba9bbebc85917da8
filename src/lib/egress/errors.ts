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
  constructor(origin: string, timeoutMs: number) {
    super(`request to ${origin} timed out after ${timeoutMs} ms`);
  }
}

export class EgressResponseTooLargeError extends EgressError {
  readonly code = 'egress_response_too_large';
  constructor(origin: string, maxBytes: number) {
    super(`response from ${origin} exceeds ${maxBytes} bytes`);
  }
}

export class EgressNetworkError extends EgressError {
  readonly code = 'egress_network_error';
}

/** The reason an aborted signal carries, as an Error. */
export function abortReason(signal: AbortSignal): unknown {
  return signal.reason ?? new DOMException('This operation was aborted', 'AbortError');
}
