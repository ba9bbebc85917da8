export * from './environments.js';
export * from './integrations.js';
export * from './connections.js';
export * from './connect.js';
export * from './events.js';
export * from './functions.js';
export * from './records.js';
export * from './webhooks.js';
