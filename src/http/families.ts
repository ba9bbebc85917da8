/**
 * The Terapi API is mounted twice with the same handlers and shapes: the seed `001` paths
 * (`/connection`, `/integration`) and the `/v1` capability paths (`/v1/connections`, …).
 * operationIds of the seed paths are kept as they are; the `/v1` copies get a prefix.
 */
export interface ApiFamily {
  name: 'terapi' | 'v1';
  paths: { connection: string; integration: string; sync: string; actionTrigger: string };
  operationId(id: string): string;
  tags(tag: string): string[];
}

export const terapiFamily: ApiFamily = {
  name: 'terapi',
  paths: { connection: '/connection', integration: '/integration', sync: '/sync', actionTrigger: '/action/trigger' },
  operationId: (id) => id,
  tags: (tag) => [tag],
};

export const v1Family: ApiFamily = {
  name: 'v1',
  paths: { connection: '/v1/connections', integration: '/v1/integrations', sync: '/v1/sync', actionTrigger: '/v1/actions/trigger' },
  operationId: (id) => `v1${id[0]!.toUpperCase()}${id.slice(1)}`,
  tags: () => ['v1'],
};
