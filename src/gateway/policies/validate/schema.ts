// Request contract of a route: JSON Schema (draft 2020-12, as in OpenAPI 3.1)
// for the path parameters, query, headers and JSON body, or the operations of
// an OpenAPI 3.1 document; compiled when the config loads.
import { z } from 'zod';

const JsonSchema = z
  .union([
    z.string().min(1).describe('a .json file with the schema, relative to the topology file'),
    z.record(z.string(), z.unknown()).describe('the schema inline'),
  ])
  .describe('a JSON Schema; `additionalProperties: false` refuses unknown fields');

const OpenApi = z
  .object({
    document: z.string().min(1).describe('an OpenAPI 3.1 document (YAML or JSON), relative to the topology file'),
    path: z
      .string()
      .regex(/^\/[^\s?#]*$/, 'a path of the document, such as /orders/{id}')
      .optional()
      .describe("the document's path template for this route; absent: the route's path"),
    unknownQuery: z
      .enum(['refuse', 'allow'])
      .default('refuse')
      .describe('query parameters the operation does not describe: refused (422) or passed on'),
  })
  .strict();

export const ValidateConfig = z
  .object({
    openapi: z
      .preprocess((v) => (typeof v === 'string' ? { document: v } : v), OpenApi)
      .optional()
      .describe(
        'take the contract of each of the route\'s methods from an OpenAPI 3.1 operation (path, query, header and cookie parameters, JSON body); a file name or { document, path, unknownQuery }',
      ),
    path: JsonSchema.optional().describe("schema of the path parameters of a templated route (`{id}` → { id: '…' }, values strings); absent: not checked"),
    query: JsonSchema.optional().describe('schema of the query parameters (values are strings; repeated ones arrays); absent: not checked'),
    headers: JsonSchema.optional().describe(
      'schema of the request headers (names in lower case, values strings); absent: not checked',
    ),
    body: JsonSchema.optional().describe('schema of the JSON body; absent: the body is not checked (and never buffered)'),
    bodyRequired: z.boolean().default(false).describe('a request without a body is refused (422)'),
    shadow: z.boolean().default(false).describe('log and count what would be refused, and let it pass'),
  })
  .strict()
  .refine((v) => v.openapi === undefined || (v.path ?? v.query ?? v.headers ?? v.body) === undefined, {
    message: 'openapi takes the whole contract from the document: drop path, query, headers and body',
    path: ['openapi'],
  })
  .describe(
    'request validation: 415 for a body that is not JSON or declares a charset other than UTF-8, 400 for bytes that are not UTF-8 JSON, 422 naming the offending field (a duplicate key included); number parameters are read as JSON writes numbers',
  );

export type ValidateConfig = z.infer<typeof ValidateConfig>;
