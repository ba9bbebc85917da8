import type { FastifyPluginAsyncZod } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { EnvironmentService } from '../environments/service.js';
import { errors } from '../lib/schemas.js';
import { account, accountName, environment, environmentName, environmentWithKey, toAccount, toEnvironment } from './schemas.js';

const tags = ['Admin'];
const security = [{ AdminKeyAuth: [] }];
const accountParams = z.object({ account_id: z.uuid() });
const environmentParams = z.object({ environment_id: z.uuid() });

/** Accounts and environments, guarded by TERAPI_ADMIN_KEY (hosted multi-tenant operation). */
export const adminRoutes: FastifyPluginAsyncZod<{ environments: EnvironmentService }> = async (app, { environments: svc }) => {
  app.post('/admin/accounts', {
    schema: {
      operationId: 'adminCreateAccount',
      tags,
      security,
      summary: 'Create an account',
      body: z.object({ name: accountName }).strict(),
      response: { 201: z.object({ data: account }), ...errors(400, 401, 403) },
    },
    handler: async (req, reply) => reply.code(201).send({ data: toAccount(await svc.createAccount(req.body.name)) }),
  });

  app.get('/admin/accounts', {
    schema: {
      operationId: 'adminListAccounts',
      tags,
      security,
      summary: 'List accounts',
      response: { 200: z.object({ data: z.array(account) }), ...errors(401, 403) },
    },
    handler: async () => ({ data: (await svc.listAccounts()).map(toAccount) }),
  });

  app.get('/admin/accounts/:account_id', {
    schema: {
      operationId: 'adminGetAccount',
      tags,
      security,
      summary: 'Get an account',
      params: accountParams,
      response: { 200: z.object({ data: account }), ...errors(400, 401, 403, 404) },
    },
    handler: async (req) => ({ data: toAccount(await svc.getAccount(req.params.account_id)) }),
  });

  app.delete('/admin/accounts/:account_id', {
    schema: {
      operationId: 'adminDeleteAccount',
      tags,
      security,
      summary: 'Delete an account with all its environments and their data',
      params: accountParams,
      response: { 204: z.undefined(), ...errors(400, 401, 403, 404) },
    },
    handler: async (req, reply) => {
      await svc.deleteAccount(req.params.account_id);
      return reply.code(204).send();
    },
  });

  app.post('/admin/accounts/:account_id/environments', {
    schema: {
      operationId: 'adminCreateEnvironment',
      tags,
      security,
      summary: 'Create an environment (its secret key is shown once)',
      params: accountParams,
      body: z.object({ name: environmentName }).strict(),
      response: { 201: z.object({ data: environmentWithKey }), ...errors(400, 401, 403, 404, 409) },
    },
    handler: async (req, reply) => {
      const { env, secretKey } = await svc.createEnvironment(req.params.account_id, req.body.name);
      return reply.code(201).send({ data: { ...toEnvironment(env), secret_key: secretKey } });
    },
  });

  app.get('/admin/accounts/:account_id/environments', {
    schema: {
      operationId: 'adminListAccountEnvironments',
      tags,
      security,
      summary: "List an account's environments",
      params: accountParams,
      response: { 200: z.object({ data: z.array(environment) }), ...errors(400, 401, 403, 404) },
    },
    handler: async (req) => {
      await svc.getAccount(req.params.account_id);
      return { data: (await svc.listEnvironments(req.params.account_id)).map(toEnvironment) };
    },
  });

  app.get('/admin/environments', {
    schema: {
      operationId: 'adminListEnvironments',
      tags,
      security,
      summary: 'List all environments',
      response: { 200: z.object({ data: z.array(environment) }), ...errors(401, 403) },
    },
    handler: async () => ({ data: (await svc.listEnvironments()).map(toEnvironment) }),
  });

  app.get('/admin/environments/:environment_id', {
    schema: {
      operationId: 'adminGetEnvironment',
      tags,
      security,
      summary: 'Get an environment',
      params: environmentParams,
      response: { 200: z.object({ data: environment }), ...errors(400, 401, 403, 404) },
    },
    handler: async (req) => ({ data: toEnvironment(await svc.getEnvironment(req.params.environment_id)) }),
  });

  app.delete('/admin/environments/:environment_id', {
    schema: {
      operationId: 'adminDeleteEnvironment',
      tags,
      security,
      summary: 'Delete an environment with its integrations and connections',
      params: environmentParams,
      response: { 204: z.undefined(), ...errors(400, 401, 403, 404) },
    },
    handler: async (req, reply) => {
      await svc.deleteEnvironment(req.params.environment_id);
      return reply.code(204).send();
    },
  });

  app.post('/admin/environments/:environment_id/rotate-secret-key', {
    schema: {
      operationId: 'adminRotateSecretKey',
      tags,
      security,
      summary: 'Replace the secret key (the old key stops working at once; the new one is shown once)',
      params: environmentParams,
      response: { 200: z.object({ data: environmentWithKey }), ...errors(400, 401, 403, 404) },
    },
    handler: async (req) => {
      const { env, secretKey } = await svc.rotateSecretKey(req.params.environment_id);
      return { data: { ...toEnvironment(env), secret_key: secretKey } };
    },
  });
};
