import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { openApiFile, renderOpenApi } from '../src/openapi.js';

type Doc = {
  servers?: { url: string }[];
  paths: Record<string, Record<string, { operationId?: string; tags?: string[]; responses?: Record<string, unknown> }>>;
  components: { schemas: Record<string, unknown> };
};

describe('OpenAPI document', () => {
  it('is committed and current (run `npm run openapi` after changing a route)', async () => {
    const committed = await readFile(openApiFile, 'utf8');
    expect(committed, 'openapi/openapi.json is stale: run `npm run openapi`').toBe(await renderOpenApi());
  });

  it('points "Try it out" at the server the document was loaded from, whatever its address', async () => {
    const doc = JSON.parse(await readFile(openApiFile, 'utf8')) as Doc;
    // A relative server URL resolves against /openapi.json or /docs/json wherever they were fetched.
    expect(doc.servers?.map((s) => s.url)).toEqual(['/']);
  });

  it('keeps the paths and operationIds of seed 001 and the /v1 surface of seed 000', async () => {
    const doc = JSON.parse(await readFile(openApiFile, 'utf8')) as Doc;
    const ops = Object.entries(doc.paths).flatMap(([path, methods]) =>
      Object.entries(methods).map(([method, op]) => `${method.toUpperCase()} ${path} ${op.operationId}`),
    );
    for (const op of [
      'GET /connection listConnections',
      'POST /connection createConnection',
      'GET /connection/{connection_id} getConnection',
      'DELETE /connection/{connection_id} deleteConnection',
      'GET /integration listIntegrations',
      'POST /integration createIntegration',
      'GET /integration/{provider_config_key} getIntegration',
      'DELETE /integration/{provider_config_key} deleteIntegration',
    ]) {
      expect(ops).toContain(op);
    }
    for (const path of [
      '/v1/connections',
      '/v1/connections/{connection_id}',
      '/v1/integrations',
      '/v1/integrations/{provider_config_key}',
    ]) {
      expect(doc.paths[path], path).toBeDefined();
    }
    for (const schema of [
      'Connection',
      'ConnectionListResponse',
      'CreateConnectionRequest',
      'Integration',
      'IntegrationListResponse',
      'CreateIntegrationRequest',
      'ErrorResponse',
    ]) {
      expect(doc.components.schemas[schema], schema).toBeDefined();
    }
  });

  it('documents every route with an operationId, tags and its error responses', async () => {
    const doc = JSON.parse(await readFile(openApiFile, 'utf8')) as Doc;
    const ids = new Set<string>();
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const [method, op] of Object.entries(methods)) {
        expect(op.operationId, `${method} ${path}`).toBeTruthy();
        expect(ids.has(op.operationId!), `duplicate ${op.operationId}`).toBe(false);
        ids.add(op.operationId!);
        expect(op.tags?.length, `${method} ${path} tags`).toBeGreaterThan(0);
        const codes = Object.keys(op.responses ?? {});
        expect(
          codes.some((c) => c.startsWith('2')),
          `${method} ${path} success response`,
        ).toBe(true);
        if (!['/health', '/ready'].includes(path)) expect(codes, `${method} ${path}`).toContain('401');
      }
    }
  });
});
