import { test } from 'node:test';
import assert from 'node:assert/strict';
import { withoutParameter } from './index.ts';

test('a query-string API key is taken out wherever and however it is written; every other byte stays', () => {
  const cases: [string, string][] = [
    ['api_key=k', ''],
    ['a=1&api_key=k&b=2', 'a=1&b=2'],
    ['api_key=k&api_key=again', ''],
    ['api%5Fkey=k&a=1', 'a=1'], // percent-encoded name: an upstream decoding names would read it as the key
    ['api_key&a=1', 'a=1'], // the name without a value
    ['a=%2F+c&&b=', 'a=%2F+c&&b='], // empty parts and encodings of others untouched
    ['%E0%A4%A=1&api_key=k', '%E0%A4%A=1'], // an undecodable name is kept, not thrown on
    ['x_api_key=k&api_keys=k', 'x_api_key=k&api_keys=k'], // only the whole name
    ['', ''],
  ];
  for (const [query, expected] of cases) assert.equal(withoutParameter(query, 'api_key'), expected, query);
});
