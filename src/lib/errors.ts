/**
 * A setting the operator must fix before Terapi can start (a bad variable, a missing binary, an
 * unreachable service): the CLI prints its message alone, without a stack.
 */
export class StartupError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The message of anything thrown (a library may throw a string or a plain object). */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  if (typeof err === 'object' && err !== null && typeof (err as { message?: unknown }).message === 'string')
    return (err as { message: string }).message;
  return String(err);
}

/** Anything thrown or given as an abort reason, as an Error (for promise rejections). */
export function asError(reason: unknown): Error {
  return reason instanceof Error ? reason : new Error(errorMessage(reason));
}

/** The `code` property of a thrown error (Node's errno codes, PostgreSQL's SQLSTATE, a library's own), if any. */
export function errorCode(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === 'string' ? code : undefined;
}

/** A PostgreSQL unique violation (SQLSTATE 23505), as the driver throws it or wrapped by drizzle. */
export function isUniqueViolation(err: unknown): boolean {
  return errorCode(err) === '23505' || (err instanceof Error && errorCode(err.cause) === '23505');
}

/** Typed errors thrown by services; one error handler maps them to `{ error, message }`. */
export class AppError extends Error {
  constructor(
    readonly statusCode: number,
    readonly code: string,
    message: string,
    readonly details?: unknown,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export interface FieldIssue {
  field: string;
  message: string;
}

/** The first field a validation error names, if it is one. */
export function firstInvalidField(err: unknown): FieldIssue | undefined {
  if (!(err instanceof AppError) || !Array.isArray(err.details)) return undefined;
  const first: unknown = err.details[0];
  return first && typeof first === 'object' && typeof (first as Partial<FieldIssue>).field === 'string' ? (first as FieldIssue) : undefined;
}

export class ValidationError extends AppError {
  constructor(message: string, details?: FieldIssue[]) {
    super(400, 'invalid_request', message, details);
  }
  /** A single bad field: the message names it. */
  static field(field: string, message: string): ValidationError {
    return new ValidationError(`${field}: ${message}`, [{ field, message }]);
  }
}

export class UnauthorizedError extends AppError {
  constructor(message = 'Missing or invalid secret key: send `Authorization: Bearer <secret key>`') {
    super(401, 'unauthorized', message);
  }
}

export class ForbiddenError extends AppError {
  constructor(message: string) {
    super(403, 'forbidden', message);
  }
}

export class NotFoundError extends AppError {
  constructor(message: string, code = 'not_found') {
    super(404, code, message);
  }
  /** The one message for an integration a request names that this environment does not have. */
  static integration(uniqueKey: string): NotFoundError {
    return new NotFoundError(`Integration "${uniqueKey}" not found`);
  }
  /** The one message for a connection a request names that this environment does not have. */
  static connection(providerConfigKey: string, connectionId: string): NotFoundError {
    return new NotFoundError(`Connection "${connectionId}" not found for integration "${providerConfigKey}"`);
  }
}

export class ConflictError extends AppError {
  constructor(message: string, code = 'conflict') {
    super(409, code, message);
  }
}

export class PayloadTooLargeError extends AppError {
  constructor(message: string) {
    super(413, 'payload_too_large', message);
  }
}

export class ServiceUnavailableError extends AppError {
  constructor(code: string, message: string) {
    super(503, code, message);
  }
}

/** The provider side is broken for this connection (revoked grant, failed upstream call). */
export class FailedDependencyError extends AppError {
  constructor(code: string, message: string) {
    super(424, code, message);
  }
}
