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
