import { test } from 'node:test';
import assert from 'node:assert/strict';
import { scanRequestHeaders, filterResponseHeaders } from './headers.ts';
import { GatehouseError } from '../shared/errors.ts';

const refused = (raw: string[], http2: boolean, pattern: RegExp) =>
  assert.throws(() => scanRequestHeaders(raw, http2), (e: unknown) => e instanceof GatehouseError && e.status === 400 && pattern.test(e.message));

test('hop-by-hop headers, Connection-named headers and spoofable identity headers are removed', () => {
  const h = scanRequestHeaders(
    [
      'Host', 'a', 'Connection', 'keep-alive, X-Secret', 'X-Secret', '1', 'Keep-Alive', 'timeout=5', 'TE', 'trailers',
      'X-Forwarded-For', '6.6.6.6', 'Forwarded', 'for=6.6.6.6', 'X-Real-IP', '6.6.6.6', 'X-Gatehouse-Identity', 'forged',
      'X-Forwarded-Client-Cert', 'By=spiffe://x', 'X-Original-URL', '/admin', 'X-Rewrite-URL', '/admin',
      'X-HTTP-Method-Override', 'DELETE', 'X-Request-Id', 'mine', 'Proxy-Authorization', 'Basic x', 'Upgrade', 'h2c',
      'Accept', 'application/json', 'Authorization', 'Bearer t',
    ],
    false,
  );
  assert.deepEqual(h.forward, ['accept', 'application/json', 'authorization', 'Bearer t']);
  assert.equal(h.xForwardedFor, '6.6.6.6');
  assert.equal(h.requestId, 'mine');
  assert.equal(h.upgrade, 'h2c');
});

test('identity headers other fronts set for their upstreams (Kong, oauth2-proxy, Apache, Azure, AWS, Google, Cloudflare) are removed', () => {
  const spoofed = [
    'X-Remote-User', 'Remote-User', 'X-Remote-Addr', 'X-Auth-Request-User', 'X-Auth-Request-Email', 'X-Authenticated-User',
    'X-Authenticated-Userid', 'X-Consumer-Username', 'X-Credential-Identifier', 'X-User', 'X-Spiffe-Id', 'X-Ms-Client-Principal',
    'X-Ms-Client-Principal-Name', 'X-Amzn-Oidc-Data', 'X-Goog-Authenticated-User-Email', 'Cf-Access-Authenticated-User-Email',
    'Client-IP', 'X-Originating-IP', 'X-Host', 'X-Original-Method',
  ];
  const h = scanRequestHeaders(['Host', 'a', ...spoofed.flatMap((name) => [name, 'admin']), 'X-Api-Version', '2'], false);
  assert.deepEqual(h.forward, ['x-api-version', '2']);
});

test('one body, one Content-Type: a second one is refused, whatever it says', () => {
  refused(['Host', 'a', 'Content-Type', 'application/json', 'Content-Type', 'application/x-www-form-urlencoded'], false, /repeated Content-Type/);
  refused(['Host', 'a', 'Content-Type', 'application/json', 'content-type', 'application/json'], false, /repeated Content-Type/);
  refused([':method', 'POST', ':authority', 'a', 'content-type', 'text/plain', 'content-type', 'application/json'], true, /repeated Content-Type/);
  assert.deepEqual(scanRequestHeaders(['Host', 'a', 'Content-Type', 'application/json'], false).forward, ['content-type', 'application/json']);
});

test('cookies sent as separate HTTP/2 fields reach the upstream as one Cookie header (RFC 9113 §8.2.3)', () => {
  const h = scanRequestHeaders([':method', 'GET', ':authority', 'a', 'cookie', 'a=1', 'accept', '*/*', 'cookie', 'b=2', 'cookie', 'c=3'], true);
  assert.deepEqual(h.forward, ['accept', '*/*', 'cookie', 'a=1; b=2; c=3']);
  assert.deepEqual(scanRequestHeaders(['Host', 'a', 'Cookie', 'a=1; b=2'], false).forward, ['cookie', 'a=1; b=2']);
});

test('framing: repeated or malformed Content-Length, TE other than chunked, TE with CL', () => {
  refused(['Host', 'a', 'Content-Length', '1', 'Content-Length', '1'], false, /repeated Content-Length/);
  refused(['Host', 'a', 'Content-Length', '+1'], false, /malformed Content-Length/);
  refused(['Host', 'a', 'Content-Length', '1,1'], false, /malformed Content-Length/);
  refused(['Host', 'a', 'Content-Length', '9999999999999999'], false, /malformed Content-Length/);
  refused(['Host', 'a', 'Transfer-Encoding', 'gzip, chunked'], false, /exactly chunked/);
  refused(['Host', 'a', 'Transfer-Encoding', 'chunked', 'Transfer-Encoding', 'chunked'], false, /repeated Transfer-Encoding/);
  refused(['Host', 'a', 'Transfer-Encoding', 'chunked', 'Content-Length', '3'], false, /both Content-Length and Transfer-Encoding/);
  refused(['Content-Length', '0'], false, /missing Host/);
  refused(['Host', 'a', 'host', 'b'], false, /repeated Host/);
  assert.equal(scanRequestHeaders(['Host', 'a', 'Transfer-Encoding', 'chunked'], false).chunked, true);
  assert.equal(scanRequestHeaders(['Host', 'a', 'Content-Length', '12'], false).contentLength, 12);
});

test('HTTP/2: connection-specific headers are refused, :authority is the host', () => {
  refused([':method', 'GET', ':authority', 'a', 'connection', 'close'], true, /connection-specific/);
  refused([':method', 'GET', ':authority', 'a', 'transfer-encoding', 'chunked'], true, /connection-specific/);
  refused([':method', 'GET', ':authority', 'a', 'upgrade', 'h2c'], true, /connection-specific/);
  refused([':method', 'GET', ':authority', 'a', 'host', 'b'], true, /disagree/);
  const h = scanRequestHeaders([':method', 'GET', ':path', '/', ':authority', 'a', 'accept', '*/*'], true);
  assert.equal(h.host, 'a');
  assert.deepEqual(h.forward, ['accept', '*/*']);
});

test('response headers: hop-by-hop, Server, X-Powered-By and x-gatehouse-* never reach the client', () => {
  const out: Record<string, string | string[]> = {};
  filterResponseHeaders(
    {
      server: 'Apache/2.4.1',
      'x-powered-by': 'Express',
      connection: 'x-internal',
      'x-internal': 'secret',
      'keep-alive': 'timeout=5',
      'transfer-encoding': 'chunked',
      'x-gatehouse-debug': '1',
      'set-cookie': ['a=1', 'b=2'],
      'content-type': 'text/plain',
    },
    out,
  );
  assert.deepEqual(out, { 'set-cookie': ['a=1', 'b=2'], 'content-type': 'text/plain' });
});
