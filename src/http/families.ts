import type { RouteOptions } from 'fastify';

/**
 * The Terapi API is mounted twice with the same handlers and shapes: the seed `001` paths
 * (`/connection`, `/integration`) and the `/v1` capability paths of seed `000`
 * (`/v1/connections`, `/v1/integrations`, `/v1/actions/trigger`, …). Routes whose paths differ
 * between the two take a family; every other route of the Terapi API is mounted again under the
 * `/v1` prefix with `asV1Route`. operationIds of the seed paths are kept as they are; the `/v1`
 * copies get a prefix.
 */
export interface ApiFamily {
  name: 'terapi' | 'v1';
  paths: { connection: string; integration: string; sync: string; action: string; actionTrigger: string };
  operationId: (id: string) => string;
  tags: (tag: string) => string[];
}

export const terapiFamily: ApiFamily = {
  name: 'terapi',
  paths: { connection: '/connection', integration: '/integration', sync: '/sync', action: '/action', actionTrigger: '/action/trigger' },
  operationId: (id) => id,
  tags: (tag) => [tag],
};

export const v1Family: ApiFamily = {
  name: 'v1',
  paths: {
    connection: '/v1/connections',
    integration: '/v1/integrations',
    sync: '/v1/sync',
    action: '/v1/actions',
    actionTrigger: '/v1/actions/trigger',
  },
  operationId: (id) => `v1${id[0]!.toUpperCase()}${id.slice(1)}`,
  tags: () => ['v1'],
};

/**
 * onRoute hook for a context registered with `prefix: '/v1'`: the copy of a route gets the `/v1`
 * operationId and tag. The schema object is copied, never changed in place, because the Terapi
 * route registered from the same plugin shares it.
 */
export function asV1Route(route: RouteOptions): void {
  const schema = route.schema as { operationId?: string; tags?: string[]; hide?: boolean } | undefined;
  if (!schema?.operationId) return;
  route.schema = { ...schema, operationId: v1Family.operationId(schema.operationId), tags: v1Family.tags('') };
}
