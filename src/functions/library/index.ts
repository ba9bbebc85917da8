import type { FunctionDefinition } from '../define.js';
import { githubFunctions } from './github.js';
import { hubspotFunctions } from './hubspot.js';
import { linearFunctions } from './linear.js';
import { slackFunctions } from './slack.js';

/** Built-in functions by provider name (catalog `name`). */
export const builtinFunctions: Record<string, readonly FunctionDefinition[]> = {
  github: githubFunctions,
  'github-enterprise': githubFunctions,
  slack: slackFunctions,
  hubspot: hubspotFunctions,
  linear: linearFunctions,
};
