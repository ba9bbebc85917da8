import { ValidationError } from '../lib/errors.js';
import type { Provider } from './schema.js';

/** Fills `${connectionConfig.x}` placeholders of a catalog URL. */
export function fillTemplate(template: string, connectionConfig: Record<string, unknown>): string {
  return template.replace(/\$\{connectionConfig\.([a-zA-Z_]+)\}/g, (_, field: string) => {
    const value = connectionConfig[field];
    if (typeof value !== 'string' || !value)
      throw ValidationError.field(`connection_config.${field}`, 'is required to reach this provider');
    return value.replace(/\/+$/, '');
  });
}

/**
 * The API base URL of a connection: the integration's override, else the catalog's, with the
 * connection's config filled in (a Zendesk subdomain, a Salesforce instance URL).
 */
export function apiBaseUrl(provider: Provider, overrides: { api_base_url?: string }, connectionConfig: Record<string, unknown>): string {
  const template = overrides.api_base_url ?? provider.api_base_url;
  if (!template)
    throw ValidationError.field(
      'api_base_url',
      `the integration has no API base URL (provider "${provider.name}" has none in the catalog)`,
    );
  return fillTemplate(template, connectionConfig);
}
