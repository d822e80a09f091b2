import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { readOpenApi, operationOf, templateNames } from './openapi.ts';

const write = (text: string) => {
  const file = path.join(mkdtempSync(path.join(tmpdir(), 'gh-oas-')), 'api.yaml');
  writeFileSync(file, text);
  return file;
};

const doc = readOpenApi(
  write(`openapi: 3.1.0
info: { title: t, version: '1' }
paths:
  /a/{id}:
    parameters:
      - { name: id, in: path, schema: { type: string } }
      - { name: q, in: query, schema: { type: string } }
    get:
      parameters:
        - { name: q, in: query, required: true, schema: { type: integer } }
        - { name: Authorization, in: header, schema: { type: string } }
        - { name: X-Ids, in: header, schema: { type: array, items: { type: integer } } }
        - { name: tags, in: query, explode: false, schema: { type: array } }
        - { name: each, in: query, schema: { type: [array, 'null'] } }
      requestBody:
        content:
          application/merge-patch+json: { schema: { $ref: '#/components/schemas/P' } }
          application/octet-stream: {}
components:
  schemas:
    P: { type: object, example: { a: 1 }, x-owner: team, properties: { enum: { enum: [{ $ref: x }] } } }
`),
  'api.yaml',
);

test('operation parameters: the operation overrides the path item, path ones are required, header names are lower case', () => {
  const op = operationOf(doc, '/a/{id}', 'GET')!;
  assert.deepEqual(op.path.schema, { type: 'object', properties: { id: { type: 'string' } }, required: ['id'] });
  assert.deepEqual((op.query.schema.properties as Record<string, unknown>).q, { type: 'integer' });
  assert.deepEqual(op.query.schema.required, ['q']);
  // Authorization is never a described parameter (OpenAPI ignores it); names are lower-cased
  assert.deepEqual(Object.keys(op.header.schema.properties as object), ['x-ids']);
  // comma-separated: simple-style arrays and form arrays without explode; exploded form arrays repeat the name
  assert.deepEqual([...op.header.commaSeparated], ['x-ids']);
  assert.deepEqual([...op.query.commaSeparated], ['tags']);
  assert.equal(operationOf(doc, '/a/{id}', 'POST'), undefined);
  assert.equal(operationOf(doc, '/nope', 'GET'), undefined);
});

test('bodies: refs point into the bundle, annotations and extensions are dropped, values are left alone', () => {
  const op = operationOf(doc, '/a/{id}', 'GET')!;
  assert.equal(op.body!.required, false);
  assert.deepEqual(op.body!.media.get('application/merge-patch+json'), { $ref: `${doc.bundleId}#/$defs/P` });
  assert.equal(op.body!.media.get('application/octet-stream'), undefined);
  assert.ok(op.body!.media.has('application/octet-stream'));
  assert.deepEqual((doc.bundle.$defs as Record<string, unknown>).P, { type: 'object', properties: { enum: { enum: [{ $ref: 'x' }] } } });
});

test('template names', () => {
  assert.deepEqual(templateNames('/a/{id}/b/{x_y}'), ['id', 'x_y']);
  assert.deepEqual(templateNames('/a'), []);
});
