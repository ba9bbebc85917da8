export * from './environments.js';
export * from './integrations.js';
export * from './connections.js';
