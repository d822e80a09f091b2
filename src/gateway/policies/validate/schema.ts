// Request contract of a route: JSON Schema (draft 2020-12, as in OpenAPI 3.1)
// for the query and the JSON body, compiled when the config loads.
import { z } from 'zod';

const JsonSchema = z
  .union([
    z.string().min(1).describe('a .json file with the schema, relative to the topology file'),
    z.record(z.string(), z.unknown()).describe('the schema inline'),
  ])
  .describe('a JSON Schema; `additionalProperties: false` refuses unknown fields');

export const ValidateConfig = z
  .object({
    query: JsonSchema.optional().describe('schema of the query parameters (values are strings; repeated ones arrays); absent: not checked'),
    headers: JsonSchema.optional().describe(
      'schema of the request headers (names in lower case, values strings); absent: not checked',
    ),
    body: JsonSchema.optional().describe('schema of the JSON body; absent: the body is not checked (and never buffered)'),
    bodyRequired: z.boolean().default(false).describe('a request without a body is refused (422)'),
    shadow: z.boolean().default(false).describe('log and count what would be refused, and let it pass'),
  })
  .strict()
  .describe('request validation: 415 for a body that is not JSON, 422 naming the offending field');

export type ValidateConfig = z.infer<typeof ValidateConfig>;
