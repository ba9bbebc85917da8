import { z } from 'zod';

/** A function's name as routes take it: the built-in library's names, and every custom function's. */
export const functionName = z
  .string()
  .min(1)
  .max(100)
  .regex(/^[a-z0-9]+(?:-[a-z0-9]+)*$/, 'must be a function name such as issues or create-issue');
