import { openApiFile, writeOpenApi } from './openapi.js';

await writeOpenApi();
process.stdout.write(`wrote ${openApiFile}\n`);
