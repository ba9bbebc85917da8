import { ValidationError } from '../lib/errors.js';

/** Fills `${connectionConfig.x}` placeholders of a catalog URL. */
export function fillTemplate(template: string, connectionConfig: Record<string, unknown>): string {
  return template.replace(/\$\{connectionConfig\.([a-zA-Z_]+)\}/g, (_, field: string) => {
    const value = connectionConfig[field];
    if (typeof value !== 'string' || !value)
      throw ValidationError.field(`connection_config.${field}`, 'is required to reach this provider');
    return value.replace(/\/+$/, '');
  });
}
