import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { hasZodFastifySchemaValidationErrors, isResponseSerializationError } from 'fastify-type-provider-zod';
import { AppError, type FieldIssue } from '../lib/errors.js';

const contextName: Record<string, string> = { querystring: 'query', params: 'path', body: 'body', headers: 'header' };

/** One error handler: typed service errors, validation errors and framework errors become `{ error, message }`. */
export function registerErrorHandling(app: FastifyInstance): void {
  app.setErrorHandler((err: FastifyError, req, reply) => {
    if (err instanceof AppError) {
      if (err.statusCode >= 500) req.log.error({ err }, err.message);
      const body: Record<string, unknown> = { error: err.code, message: err.message };
      if (err.details !== undefined) body.details = err.details;
      return reply.code(err.statusCode).send(body);
    }
    if (hasZodFastifySchemaValidationErrors(err)) {
      const where = contextName[err.validationContext ?? ''] ?? err.validationContext ?? 'request';
      const details: FieldIssue[] = err.validation.map((v) => {
        const path = v.instancePath.replace(/^\//, '').replaceAll('/', '.');
        return { field: path || where, message: v.message ?? 'is invalid' };
      });
      const message = `Invalid ${where}: ${details.map((d) => `${d.field}: ${d.message}`).join('; ')}`;
      return reply.code(400).send({ error: 'invalid_request', message, details });
    }
    if (isResponseSerializationError(err)) {
      req.log.error({ err, issues: err.cause.issues }, 'response does not match its schema');
      return reply.code(500).send({ error: 'internal_error', message: `Internal error (request ${req.id})` });
    }
    switch (err.code) {
      case 'FST_ERR_CTP_INVALID_JSON_BODY':
      case 'FST_ERR_CTP_EMPTY_JSON_BODY':
        return reply.code(400).send({ error: 'invalid_json', message: `Malformed JSON body: ${err.message}` });
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return reply.code(413).send({ error: 'payload_too_large', message: 'Request body is larger than the server accepts' });
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return reply.code(415).send({ error: 'unsupported_media_type', message: 'Send the body as application/json' });
    }
    if (err instanceof SyntaxError && /JSON/.test(err.message)) {
      return reply.code(400).send({ error: 'invalid_json', message: `Malformed JSON body: ${err.message}` });
    }
    if (err.statusCode && err.statusCode >= 400 && err.statusCode < 500) {
      return reply.code(err.statusCode).send({ error: 'bad_request', message: err.message });
    }
    req.log.error({ err: withoutQueryParams(err) }, 'unhandled error');
    return reply.code(500).send({ error: 'internal_error', message: `Internal error (request ${req.id})` });
  });

  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: 'not_found', message: `No route ${req.method} ${quotedPath(req.url)}` }),
  );
}

/** The request path as error messages quote it: no query string, and bounded (a URL may be kilobytes long). */
function quotedPath(url: string): string {
  const path = url.split('?')[0]!;
  return path.length > 100 ? `${path.slice(0, 100)}…` : path;
}

/**
 * Fastify's `frameworkErrors` option: errors raised while routing, before any handler or hook
 * (a path parameter over `maxParamLength`, a malformed percent-encoding). Fastify's own answer
 * echoes the whole URL in its own shape; ours is `{ error, message }` like every other error.
 */
export function frameworkErrors(err: FastifyError, req: FastifyRequest, reply: FastifyReply): void {
  switch (err.code) {
    case 'FST_ERR_MAX_PARAM_LENGTH':
      void reply.code(414).send({ error: 'uri_too_long', message: 'A path parameter is longer than the server accepts' });
      return;
    case 'FST_ERR_BAD_URL':
      void reply.code(400).send({ error: 'bad_request', message: 'The request path is not a valid URL (malformed percent-encoding)' });
      return;
    default:
      req.log.error({ code: err.code }, 'request failed while routing');
      void reply.code(500).send({ error: 'internal_error', message: `Internal error (request ${req.id})` });
  }
}

/** Database errors quote the failed query's parameters; keep them out of the logs. */
function withoutQueryParams(err: Error): Error {
  const at = err.message.indexOf('\nparams:');
  if (at < 0) return err;
  const copy = new Error(err.message.slice(0, at), { cause: err.cause });
  copy.name = err.name;
  copy.stack = `${copy.name}: ${copy.message}`;
  return copy;
}
