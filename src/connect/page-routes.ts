import { randomBytes } from 'node:crypto';
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../lib/errors.js';
import { providerConfigKey } from '../lib/schemas.js';
import { type AuthFlows, FlowError, type FlowResult } from '../oauth/flow.js';
import type { ConnectSession, ConnectSessionService } from './service.js';
import { errorPage, formFields, formPage, listPage, successPage } from './views.js';

const COOKIE = 'terapi_connect';
const statusOf: Record<FlowError['kind'], number> = {
  expired: 401,
  denied: 403,
  not_allowed: 403,
  not_configured: 409,
  invalid_input: 400,
  invalid_credentials: 400,
  provider_error: 502,
};

function readCookie(req: FastifyRequest): string | undefined {
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const [name, ...rest] = part.trim().split('=');
    if (name === COOKIE) return decodeURIComponent(rest.join('='));
  }
  return undefined;
}

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

  app.addContentTypeParser('application/x-www-form-urlencoded', { parseAs: 'string', bodyLimit: 64 * 1024 }, (_req, body, done) => {
    done(null, Object.fromEntries(new URLSearchParams(body as string)));
  });

  function html(reply: FastifyReply, status: number, render: (nonce: string) => string) {
    const nonce = randomBytes(16).toString('base64');
    return reply
      .code(status)
      .header('content-type', 'text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .header('referrer-policy', 'no-referrer')
      .header('x-content-type-options', 'nosniff')
      .header('content-security-policy', `default-src 'none'; style-src 'unsafe-inline'; script-src 'nonce-${nonce}'; form-action 'self' https: http:; base-uri 'none'`)
      .send(render(nonce));
  }

  const fail = (reply: FastifyReply, err: unknown, known?: ConnectSession) => {
    if (err instanceof FlowError) {
      const session = err.session ?? known;
      let back: string | null = null;
      if (session?.redirectUrl) {
        const url = new URL(session.redirectUrl);
        url.searchParams.set('error', err.kind);
        back = url.toString();
      }
      return html(reply, statusOf[err.kind], (n) =>
        errorPage({ kind: err.kind, message: err.message, origin: session?.allowedOrigin ?? null, back }, n),
      );
    }
    if (err instanceof AppError && err.statusCode === 401) {
      return html(reply, 401, (n) => errorPage({ kind: 'expired', message: 'This connect link has expired. Ask the application for a new one.', origin: null, back: null }, n));
    }
    throw err;
  };

  async function sessionOf(req: FastifyRequest, token?: string) {
    return sessions.authenticate(token ?? readCookie(req));
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
          reply.header('set-cookie', `${COOKIE}=${encodeURIComponent(token)}; Path=/; HttpOnly; SameSite=Lax; Max-Age=${maxAge}${secure ? '; Secure' : ''}`);
          return reply.code(303).header('location', '/connect').send();
        }
        const integrations = await sessions.allowedIntegrations(session);
        if (session.reconnectConnectionId && integrations[0]) return reply.code(303).header('location', `/connect/i/${encodeURIComponent(integrations[0].uniqueKey)}`).send();
        const items = integrations.map((i) => ({
          key: i.uniqueKey,
          name: i.displayName ?? flows.providerName(i.provider),
          authMode: flows.authModeOf(i.provider),
        }));
        return html(reply, 200, (n) => listPage(items, n));
      } catch (err) {
        return fail(reply, err);
      }
    },
  });

  app.get('/connect/i/:key', {
    schema: { ...hide, params: z.object({ key: providerConfigKey }) },
    handler: async (req, reply) => {
      let session: ConnectSession | undefined;
      try {
        session = await sessionOf(req);
        const { provider } = await flows.allowedIntegration(session, req.params.key);
        const missing = flows.missingConfigFields(session, req.params.key, provider);
        if (provider.auth_mode === 'OAUTH2' && missing.length === 0) {
          return reply.code(303).header('location', (await flows.startOAuth(session, req.params.key, {})).toString()).send();
        }
        return html(reply, 200, (n) => formPage({ key: req.params.key, provider, fields: formFields(provider, missing) }, n));
      } catch (err) {
        return fail(reply, err, session);
      }
    },
  });

  app.post('/connect/i/:key', {
    schema: { ...hide, params: z.object({ key: providerConfigKey }), body: z.record(z.string().max(100), z.string().max(20_000)) },
    handler: async (req, reply) => {
      let session: ConnectSession | undefined;
      const origin = req.headers.origin;
      if (origin && origin !== 'null' && origin !== ownOrigin) {
        return html(reply, 403, (n) => errorPage({ kind: 'not_allowed', message: 'This form can only be sent from the Connect page.', origin: null, back: null }, n));
      }
      try {
        session = await sessionOf(req);
        const { provider } = await flows.allowedIntegration(session, req.params.key);
        const typed = req.body;
        try {
          if (provider.auth_mode === 'OAUTH2') {
            return reply.code(303).header('location', (await flows.startOAuth(session, req.params.key, typed)).toString()).send();
          }
          return succeed(reply, await flows.connectWithCredentials(session, req.params.key, typed), provider.display_name);
        } catch (err) {
          if (err instanceof FlowError && (err.kind === 'invalid_input' || err.kind === 'invalid_credentials' || err.kind === 'provider_error')) {
            const missing = flows.missingConfigFields(session, req.params.key, provider);
            // Re-render the form with what the user typed, never with secrets.
            const keep = Object.fromEntries(Object.entries(typed).filter(([k]) => !['api_key', 'password', 'client_secret'].includes(k)));
            return html(reply, statusOf[err.kind], (n) =>
              formPage({ key: req.params.key, provider, fields: formFields(provider, missing, keep), error: { message: err.message, field: err.field } }, n),
            );
          }
          throw err;
        }
      } catch (err) {
        return fail(reply, err, session);
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
        return reply.code(302).header('location', (await flows.startOAuth(session, req.params.key, typed)).toString()).send();
      } catch (err) {
        return fail(reply, err, session);
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
        return succeed(reply, result, flows.providerName(result.connection.provider));
      } catch (err) {
        return fail(reply, err, undefined);
      }
    },
  });
};
