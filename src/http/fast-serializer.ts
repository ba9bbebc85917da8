import fastJson from 'fast-json-stringify';
import { z } from 'zod';

/**
 * Response serializer for the hottest routes (token and connection reads): fast-json-stringify
 * compiled from the same zod schema the route declares, instead of a zod encode plus
 * JSON.stringify on every response. Only declared properties are written, so nothing outside the
 * schema can leak; the shapes stay covered by the route tests and the committed OpenAPI document.
 */
export const fastSerializerCompiler = ({ schema }: { schema: unknown }): ((data: unknown) => string) =>
  fastJson(
    z.toJSONSchema(schema as z.ZodType, { io: 'output', unrepresentable: 'any', target: 'draft-7' }) as Parameters<typeof fastJson>[0],
  );
