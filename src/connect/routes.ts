import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { endUserSchema, tagsSchema } from '../connections/schemas.js';
import { bearerToken } from '../environments/keys.js';
import { ValidationError } from '../lib/errors.js';
import { connectionIdSchema, errors, jsonObject, providerConfigKey } from '../lib/schemas.js';
import type { ConnectSession, ConnectSessionInput, ConnectSessionService } from './service.js';

const tags = ['Connect'];

/** Plain http is for a developer's own machine only; anything else must be https. */
const secureOrLocal = (u: URL) =>
  u.protocol === 'https:' || (u.protocol === 'http:' && ['localhost', '127.0.0.1', '[::1]'].includes(u.hostname));

const redirectUrl = z
  .url({ protocol: /^https?$/ })
  .max(2000)
  .refine((u) => secureOrLocal(new URL(u)), 'must be https (or http on localhost, 127.0.0.1 or [::1])')
  .describe('Where the Connect page sends the user after success (query gains connection_id and provider_config_key)');
/** A DNS name, an IPv4 address or a bracketed IPv6 address (no wildcards, no empty labels). */
const validHost = (host: string): boolean =>
  /^\[[0-9a-f:.]+\]$/i.test(host) ||
  /^(?=.{1,253}$)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*$/i.test(host);

const origin = z
  .string()
  .max(300)
  .transform((value, ctx) => {
    let u: URL | undefined;
    try {
      u = new URL(value);
    } catch {
      // Reported below.
    }
    // scheme://host[:port] and nothing else (a trailing "/" is tolerated); a bad port fails to parse.
    if (
      !u ||
      !/^https?:$/.test(u.protocol) ||
      u.username ||
      u.password ||
      u.pathname !== '/' ||
      u.search ||
      u.hash ||
      u.port === '0' ||
      !validHost(u.hostname) ||
      /[/?#]./.test(value.replace(/^https?:\/\//i, ''))
    ) {
      ctx.addIssue({
        code: 'custom',
        message: 'must be an origin such as https://app.example.com (scheme, host and optional port; no path)',
      });
      return z.NEVER;
    }
    if (!secureOrLocal(u)) {
      ctx.addIssue({ code: 'custom', message: 'must be https (or http on localhost, 127.0.0.1 or [::1])' });
      return z.NEVER;
    }
    return u.origin;
  })
  .describe(
    'The only origin the Connect page posts its result message to (defaults to the origin of redirect_url): https, or http on localhost',
  );

const defaults = z
  .record(
    providerConfigKey,
    z
      .object({
        user_scopes: z.string().max(5000).optional().describe("Comma-separated scopes replacing the integration's"),
        authorization_params: z.record(z.string().max(100), z.string().max(2000)).optional(),
        connection_config: jsonObject.optional(),
      })
      .strict(),
  )
  .describe('Per-integration defaults, keyed by provider_config_key');

const sessionBody = {
  organization: z
    .object({ id: z.string().min(1).max(255), display_name: z.string().max(255).optional() })
    .strict()
    .optional(),
  integrations_config_defaults: defaults.optional(),
  tags: tagsSchema.optional(),
  redirect_url: redirectUrl.optional(),
  allowed_origin: origin.optional(),
};
const endUserWithTags = endUserSchema.extend({ tags: tagsSchema.optional() });

const sessionToken = z
  .object({ token: z.string(), connect_link: z.string(), expires_at: z.iso.datetime() })
  .meta({ id: 'ConnectSessionToken' });

const sessionView = z
  .object({
    end_user: z.record(z.string(), z.unknown()),
    organization: z.record(z.string(), z.unknown()).nullable(),
    allowed_integrations: z.array(z.string()).nullable(),
    integrations_config_defaults: z.record(z.string(), z.unknown()),
    tags: z.record(z.string(), z.string()),
    redirect_url: z.string().nullable(),
    allowed_origin: z.string().nullable(),
    is_reconnect: z.boolean(),
    expires_at: z.iso.datetime(),
  })
  .meta({ id: 'ConnectSession' });

function toView(s: ConnectSession): z.output<typeof sessionView> {
  return {
    end_user: { ...s.endUser },
    organization: s.organization ?? null,
    allowed_integrations: s.allowedIntegrations ?? null,
    integrations_config_defaults: s.integrationsConfigDefaults,
    tags: s.tags,
    redirect_url: s.redirectUrl ?? null,
    allowed_origin: s.allowedOrigin ?? null,
    is_reconnect: s.reconnectConnectionId !== null,
    expires_at: s.expiresAt.toISOString(),
  };
}

/** The fields both session bodies share, as the service takes them. */
const sharedInput = (b: {
  organization?: { id: string; display_name?: string };
  integrations_config_defaults?: ConnectSessionInput['integrationsConfigDefaults'];
  tags?: Record<string, string>;
  redirect_url?: string;
  allowed_origin?: string;
}) => ({
  organization: b.organization,
  integrationsConfigDefaults: b.integrations_config_defaults,
  tags: b.tags,
  redirectUrl: b.redirect_url,
  allowedOrigin: b.allowed_origin,
});

/** Nango's newer clients may name the end user only by tags (`end_user_id`, `end_user_email`, `end_user_display_name`). */
function endUserFromTags(tags: Record<string, string> | undefined): ConnectSessionInput['endUser'] {
  if (!tags?.end_user_id) throw ValidationError.field('end_user', 'is required (or tags.end_user_id)');
  const fromTag = { id: 'end_user_id', email: 'end_user_email', display_name: 'end_user_display_name' } as const;
  const parsed = endUserSchema.safeParse({ id: tags.end_user_id, email: tags.end_user_email, display_name: tags.end_user_display_name });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw ValidationError.field(`tags.${fromTag[issue.path[0] as keyof typeof fromTag]}`, issue.message);
  }
  return parsed.data;
}

const toToken = (r: { token: string; connectLink: string; expiresAt: Date }) => ({
  data: { token: r.token, connect_link: r.connectLink, expires_at: r.expiresAt.toISOString() },
});

/** Connect sessions created by the SaaS backend with its secret key (Nango-compatible). */
export const connectSessionRoutes: FastifyPluginAsyncZod<{ sessions: ConnectSessionService }> = async (app, { sessions }) => {
  app.post('/connect/sessions', {
    schema: {
      operationId: 'createConnectSession',
      tags,
      summary: 'Create a connect session',
      description:
        'A short-lived token (30 minutes by default) and the Connect page link for one end user of your product. Like a Nango session, it stays usable until it expires: the user may connect several accounts with it (one new connection each time). End it early with DELETE /connect/session.',
      body: z.object({
        end_user: endUserWithTags.optional().describe('The end user; may be omitted when `tags.end_user_id` names them (as Nango allows)'),
        allowed_integrations: z
          .array(providerConfigKey)
          .min(1)
          .max(200)
          .optional()
          .describe('Integration keys the user may connect (default: all)'),
        ...sessionBody,
      }),
      response: { 201: z.object({ data: sessionToken }), ...errors(400, 401) },
    },
    handler: async (req, reply) => {
      const b = req.body;
      const created = await sessions.create(req.environment.id, {
        ...sharedInput(b),
        endUser: b.end_user ?? endUserFromTags(b.tags),
        allowedIntegrations: b.allowed_integrations,
      });
      return reply.code(201).send(toToken(created));
    },
  });

  app.post('/connect/sessions/reconnect', {
    schema: {
      operationId: 'createReconnectSession',
      tags,
      summary: 'Create a session that re-authorizes an existing connection',
      body: z.object({
        connection_id: connectionIdSchema,
        integration_id: providerConfigKey.describe('The provider_config_key of the connection'),
        end_user: endUserWithTags.optional(),
        ...sessionBody,
      }),
      response: { 201: z.object({ data: sessionToken }), ...errors(400, 401, 404) },
    },
    handler: async (req, reply) => {
      const b = req.body;
      const created = await sessions.reconnect(req.environment.id, {
        ...sharedInput(b),
        connectionId: b.connection_id,
        providerConfigKey: b.integration_id,
        endUser: b.end_user,
      });
      return reply.code(201).send(toToken(created));
    },
  });
};

/** Routes authenticated by the connect session token itself (the front end's view of its session). */
export const connectSessionSelfRoutes: FastifyPluginAsyncZod<{ sessions: ConnectSessionService }> = async (app, { sessions }) => {
  const security = [{ ConnectSessionAuth: [] }];
  app.get('/connect/session', {
    schema: {
      operationId: 'getConnectSession',
      tags,
      security,
      summary: 'Get the connect session (authorized by its token)',
      response: { 200: z.object({ data: sessionView }), ...errors(401) },
    },
    handler: async (req) => ({ data: toView(await sessions.authenticate(bearerToken(req.headers.authorization))) }),
  });

  app.delete('/connect/session', {
    schema: {
      operationId: 'deleteConnectSession',
      tags,
      security,
      summary: 'End the connect session (authorized by its token)',
      response: { 204: z.undefined(), ...errors(401) },
    },
    handler: async (req, reply) => {
      await sessions.delete(await sessions.authenticate(bearerToken(req.headers.authorization)));
      return reply.code(204).send();
    },
  });
};
