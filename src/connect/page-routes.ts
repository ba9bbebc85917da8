import fastifyCookie from '@fastify/cookie';
import fastifyFormbody from '@fastify/formbody';
import fastifyHelmet from '@fastify/helmet';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError, errorMessage } from '../lib/errors.js';
import { providerConfigKey } from '../lib/schemas.js';
import { type AuthFlows, FlowError, type FlowResult } from '../oauth/flow.js';
import type { ConnectSession, ConnectSessionService } from './service.js';
import { errorPage, formFields, formPage, listPage, type Nonces, successPage } from './views.js';

const COOKIE = 'terapi_connect';
const statusOf: Record<FlowError['kind'], number> = {
  expired: 401,
  denied: 403,
  not_allowed: 403,
  not_configured: 409,
  invalid_input: 400,
  invalid_credentials: 400,
  provider_error: 502,
  internal: 500,
};

/**
 * The hosted Connect page and the OAuth redirect endpoints. The session token arrives once in the
 * connect link and is moved at once into an HttpOnly cookie, so it does not stay in the URL,
 * browser history or Referer headers.
 */
export const connectPageRoutes: FastifyPluginAsyncZod<{ sessions: ConnectSessionService; flows: AuthFlows; serverUrl: string }> = async (
  app,
  { sessions, flows, serverUrl },
) => {
  const secure = serverUrl.startsWith('https://');
  const ownOrigin = new URL(serverUrl).origin;

  // Registered here rather than on the whole app: only these end-user pages take cookies and
  // form bodies, and their headers (a nonce-based CSP above all) would break the API docs page.
  await app.register(fastifyCookie);
  await app.register(fastifyFormbody, { bodyLimit: 64 * 1024 });
  await app.register(fastifyHelmet, {
    enableCSPNonces: true,
    contentSecurityPolicy: {
      useDefaults: false,
      // script-src and style-src receive the per-response nonces.
      directives: {
        defaultSrc: ["'none'"],
        scriptSrc: [],
        styleSrc: [],
        formAction: ["'self'", 'https:', 'http:'],
        baseUri: ["'none'"],
        frameAncestors: ["'self'"],
      },
    },
    // Popup mode reports to window.opener, which Cross-Origin-Opener-Policy: same-origin would cut.
    crossOriginOpenerPolicy: false,
    referrerPolicy: { policy: 'no-referrer' },
  });

  function html(reply: FastifyReply, status: number, render: (nonces: Nonces) => string) {
    // Helmet's onRequest hook sets the nonces and the CSP naming them; without it there is no CSP to match.
    const nonces = reply.cspNonce ?? { script: '', style: '' };
    return reply.code(status).header('content-type', 'text/html; charset=utf-8').header('cache-control', 'no-store').send(render(nonces));
  }

  /** What the end user is told about a failure; anything unexpected is logged and stays vague. */
  function explain(req: FastifyRequest, err: unknown): { error: FlowError; status: number } {
    if (err instanceof FlowError) {
      if (err.kind === 'internal') req.log.error({ err: err.cause ?? err }, 'connect flow failed');
      return { error: err, status: statusOf[err.kind] };
    }
    if (err instanceof AppError && err.statusCode === 401) {
      return { error: new FlowError('expired', 'This connect link has expired. Ask the application for a new one.'), status: 401 };
    }
    // Validation, body parsing and the input guard: the request itself is wrong.
    const status = typeof err === 'object' && err !== null && 'statusCode' in err ? err.statusCode : undefined;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return { error: new FlowError('invalid_input', `This request is not valid: ${errorMessage(err)}`), status };
    }
    req.log.error({ err }, 'connect page failed');
    return { error: new FlowError('internal', `Something went wrong on our side; try again later (request ${req.id}).`), status: 500 };
  }

  /** Every failure inside the Connect flow is a page that also tells the opener, never raw JSON. */
  const fail = (req: FastifyRequest, reply: FastifyReply, err: unknown, known?: ConnectSession) => {
    const { error, status } = explain(req, err);
    const session = error.session ?? known;
    let back: string | null = null;
    if (session?.redirectUrl) {
      const url = new URL(session.redirectUrl);
      url.searchParams.set('error', error.kind);
      back = url.toString();
    }
    return html(reply, status, (n) =>
      errorPage({ kind: error.kind, message: error.message, origin: session?.allowedOrigin ?? null, back }, n),
    );
  };

  // Errors raised before a handler runs (validation, body parsing, the input guard) end here.
  app.setErrorHandler(async (err, req, reply) => {
    let session: ConnectSession | undefined;
    try {
      session = await sessions.authenticate(req.cookies?.[COOKIE]);
    } catch {
      // No live session: the page cannot tell an opener, but still explains itself.
    }
    return fail(req, reply, err, session);
  });

  async function sessionOf(req: FastifyRequest, token?: string) {
    return sessions.authenticate(token ?? req.cookies[COOKIE]);
  }

  function succeed(reply: FastifyReply, result: FlowResult, providerName: string) {
    const s = result.session;
    let redirect: string | null = null;
    if (s?.redirectUrl) {
      const url = new URL(s.redirectUrl);
      url.searchParams.set('connection_id', result.connection.connectionId);
      url.searchParams.set('provider_config_key', result.connection.providerConfigKey);
      redirect = url.toString();
    }
    return html(reply, 200, (n) =>
      successPage(
        {
          providerName,
          connectionId: result.connection.connectionId,
          providerConfigKey: result.connection.providerConfigKey,
          isReconnect: !result.created,
          origin: s?.allowedOrigin ?? null,
          redirect,
        },
        n,
      ),
    );
  }

  const hide = { hide: true } as const;

  app.get('/connect', {
    schema: { ...hide, querystring: z.object({ session_token: z.string().max(200).optional() }) },
    handler: async (req, reply) => {
      const token = req.query.session_token;
      try {
        const session = await sessionOf(req, token);
        if (token) {
          const maxAge = Math.max(0, Math.floor((session.expiresAt.getTime() - Date.now()) / 1000));
          reply.setCookie(COOKIE, token, { path: '/', httpOnly: true, sameSite: 'lax', maxAge, secure });
          return reply.code(303).header('location', '/connect').send();
        }
        const allowed = await sessions.allowedIntegrations(session);
        if (session.reconnectConnectionId && allowed[0])
          return reply
            .code(303)
            .header('location', `/connect/i/${encodeURIComponent(allowed[0].uniqueKey)}`)
            .send();
        // Only integrations an end user can complete (an OAuth integration needs its client).
        const integrations = allowed.filter((i) => flows.isUsable(i));
        const names = integrations.map((i) => flows.integrationName(i));
        const items = integrations.map((i, at) => ({
          key: i.uniqueKey,
          // Two integrations of one provider without display names would look the same: add the key.
          name: names.indexOf(names[at]!) !== names.lastIndexOf(names[at]!) ? `${names[at]} (${i.uniqueKey})` : names[at]!,
          authMode: flows.authModeOf(i.provider),
        }));
        return html(reply, 200, (n) => listPage(items, n));
      } catch (err) {
        return fail(req, reply, err);
      }
    },
  });

  app.get('/connect/i/:key', {
    schema: { ...hide, params: z.object({ key: providerConfigKey }) },
    handler: async (req, reply) => {
      let session: ConnectSession | undefined;
      try {
        session = await sessionOf(req);
        const { integration, provider } = await flows.allowedIntegration(session, req.params.key);
        const missing = flows.missingConfigFields(session, req.params.key, provider);
        if (provider.auth_mode === 'OAUTH2' && missing.length === 0) {
          return reply
            .code(303)
            .header('location', (await flows.startOAuth(session, req.params.key, {})).toString())
            .send();
        }
        const name = flows.integrationName(integration);
        return html(reply, 200, (n) => formPage({ key: req.params.key, name, provider, fields: formFields(provider, missing) }, n));
      } catch (err) {
        return fail(req, reply, err, session);
      }
    },
  });

  app.post('/connect/i/:key', {
    schema: { ...hide, params: z.object({ key: providerConfigKey }), body: z.record(z.string().max(100), z.string().max(20_000)) },
    handler: async (req, reply) => {
      let session: ConnectSession | undefined;
      const origin = req.headers.origin;
      if (origin && origin !== 'null' && origin !== ownOrigin) {
        return html(reply, 403, (n) =>
          errorPage({ kind: 'not_allowed', message: 'This form can only be sent from the Connect page.', origin: null, back: null }, n),
        );
      }
      try {
        session = await sessionOf(req);
        const { integration, provider } = await flows.allowedIntegration(session, req.params.key);
        const name = flows.integrationName(integration);
        const typed = req.body;
        try {
          if (provider.auth_mode === 'OAUTH2') {
            return reply
              .code(303)
              .header('location', (await flows.startOAuth(session, req.params.key, typed)).toString())
              .send();
          }
          return succeed(reply, await flows.connectWithCredentials(session, req.params.key, typed), name);
        } catch (err) {
          if (
            err instanceof FlowError &&
            (err.kind === 'invalid_input' || err.kind === 'invalid_credentials' || err.kind === 'provider_error')
          ) {
            const missing = flows.missingConfigFields(session, req.params.key, provider);
            // Re-render the form with what the user typed, never with secrets.
            const keep = Object.fromEntries(Object.entries(typed).filter(([k]) => !['api_key', 'password', 'client_secret'].includes(k)));
            return html(reply, statusOf[err.kind], (n) =>
              formPage(
                {
                  key: req.params.key,
                  name,
                  provider,
                  fields: formFields(provider, missing, keep),
                  error: { message: err.message, field: err.field },
                },
                n,
              ),
            );
          }
          throw err;
        }
      } catch (err) {
        return fail(req, reply, err, session);
      }
    },
  });

  app.get('/oauth/connect/:key', {
    schema: {
      ...hide,
      params: z.object({ key: providerConfigKey }),
      querystring: z.record(z.string().max(100), z.string().max(2000)),
    },
    handler: async (req, reply) => {
      let session: ConnectSession | undefined;
      try {
        const { connect_session_token: token, ...typed } = req.query;
        session = await sessionOf(req, token);
        return reply
          .code(302)
          .header('location', (await flows.startOAuth(session, req.params.key, typed)).toString())
          .send();
      } catch (err) {
        return fail(req, reply, err, session);
      }
    },
  });

  app.get('/oauth/callback', {
    schema: {
      ...hide,
      querystring: z.object({
        state: z.string().max(500).optional(),
        code: z.string().max(5000).optional(),
        error: z.string().max(200).optional(),
        error_description: z.string().max(2000).optional(),
      }),
    },
    handler: async (req, reply) => {
      try {
        const result = await flows.finishOAuth(req.query);
        return succeed(reply, result, result.integrationName);
      } catch (err) {
        return fail(req, reply, err, undefined);
      }
    },
  });
};
