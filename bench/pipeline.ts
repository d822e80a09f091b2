// The gateway's own code per request, without sockets: one gateway started in
// this process, its upstream replaced by one that answers from memory, and
// requests handed straight to its handler (every phase, the upstream call's
// headers, the response head, metrics and the access log into a null sink).
// What TLS, the HTTP parser and undici cost is not in these figures — see
// bench/profile-gateway.ts for the whole process.
//
// Prints CPU µs and bytes allocated per request. The bytes are counted in a
// young generation large enough that no collection runs meanwhile (the least of
// three rounds, within ~100 B run to run) and do not move with a busy machine;
// the µs do, by about a microsecond.
//
//   sh scripts/node.sh --max-semi-space-size=256 --min-semi-space-size=256 --expose-gc bench/pipeline.ts [--requests 200000] [--headers browser] [--log off] [--policies everything]
//
// --sites N: also print the N functions that allocate the most (V8's sampling
// heap profiler, collected objects included).
// --headers: 'wrk' (Host only, what the load benches send) or 'browser' (a
// browser's dozen headers).
// --policies: 'none' (an anonymous route) or 'everything' (bench/policies.ts's
// row of that name: an EdDSA JWT from the verified-token cache, its scope, a
// rate limit in memory, the identity token; the JWKS served from this process).
import { mkdtempSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { SignJWT, generateKeyPair, exportJWK } from 'jose';
import { openDevCa } from '../src/shared/dev-ca.ts';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { PerformanceObserver } from 'node:perf_hooks';
import { startGateway } from '../src/gateway/server.ts';
import { createHandler, type PipelineContext } from '../src/gateway/pipeline.ts';
import { createAccessLogger, createLogger } from '../src/shared/logger.ts';
import { systemClock } from '../src/shared/clock.ts';
import { benchTopology, table } from './lib.ts';

const { values } = parseArgs({ options: { requests: { type: 'string', default: '200000' }, headers: { type: 'string', default: 'wrk' }, log: { type: 'string', default: 'on' }, sites: { type: 'string' }, policies: { type: 'string', default: 'none' } } });
const everything = values.policies === 'everything';
const requests = Number(values.requests);
const HOST = '127.0.0.1:8443';
const rawHeaders =
  values.headers === 'browser'
    ? [
        'Host', HOST,
        'User-Agent', 'Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0',
        'Accept', 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
        'Accept-Language', 'en-GB,en;q=0.5',
        'Accept-Encoding', 'gzip, deflate, br, zstd',
        'Connection', 'keep-alive',
        'Cookie', 'session=abc123; theme=dark',
        'Upgrade-Insecure-Requests', '1',
        'Sec-Fetch-Dest', 'document',
        'Sec-Fetch-Mode', 'navigate',
        'Sec-Fetch-Site', 'none',
        'Priority', 'u=0, i',
      ]
    : ['Host', HOST];

const dir = mkdtempSync(path.join(tmpdir(), 'gh-pipeline-'));
const file = path.join(dir, 'gatehouse.yaml');
let zone = '';
let route: string | undefined;
let jwksServer: https.Server | undefined;
if (everything) {
  // a token issuer with an HTTPS JWKS, as bench/policies.ts has it
  const pair = await (await openDevCa(dir, 'bench.local')).issueServer(['127.0.0.1', 'localhost']);
  const ed = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
  const jwks = { keys: [{ ...(await exportJWK(ed.publicKey)), kid: 'bench-ed', alg: 'EdDSA', use: 'sig' }] };
  jwksServer = https.createServer(pair, (_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(jwks)));
  await new Promise<void>((r) => jwksServer!.listen(0, '127.0.0.1', r));
  const issuer = `https://127.0.0.1:${(jwksServer.address() as { port: number }).port}`;
  const now = Math.floor(Date.now() / 1000);
  const claims = { iss: issuer, aud: 'urn:bench', sub: 'bench-user', client_id: 'bench-client', scope: 'orders:read', iat: now, exp: now + 3600, jti: 'bench-1' };
  const token = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: 'bench-ed', typ: 'at+jwt' }).sign(ed.privateKey);
  rawHeaders.push('Authorization', `Bearer ${token}`);
  zone = `\n    authentication:\n      issuers: [{ issuer: '${issuer}', jwksUri: '${issuer}/jwks', audiences: [urn:bench] }]\n      tokenCache: 10000`;
  route = `auth: { scopes: [orders:read] }\n        policies: { rate_limit: { limit: 1000000000, windowSeconds: 60, key: [address] } }`;
}
const headers: Record<string, string> = {};
for (let i = 0; i < rawHeaders.length; i += 2) headers[rawHeaders[i].toLowerCase()] = rawHeaders[i + 1];
writeFileSync(file, benchTopology(0, 'http://127.0.0.1:9', { accessLog: values.log === 'on', zone, route }));
const sink = { write: () => true, flush: (cb?: () => void) => cb?.() };
const accessLog = values.log === 'on' ? createAccessLogger('bench', sink as never) : false;
const logger = createLogger({ name: 'bench', level: 'warn' });
const gw = await startGateway({ config: file, zone: 'bench', stateDir: dir, logger, accessLog, adminListen: false });
const state = gw.state();

// nginx's answer to the load benches (bench/lib.ts upstreamServerBlock)
const BODY = Buffer.from('{"ok":true}');
const answer = {
  statusCode: 200,
  headers: { server: 'nginx/1.26.3', date: new Date().toUTCString(), 'content-type': 'application/json', 'content-length': String(BODY.length), connection: 'keep-alive' },
  opaque: undefined,
  context: {},
};
// the real Upstream (its breaker, its callbacks), over a pool that answers at once
let fields = 0;
let calls = 0;
const pool = {
  stream(options: { headers: string[] }, factory: (data: typeof answer) => { write(b: Buffer): void; end(): void }, callback?: (error: Error | null) => void) {
    // as undici: the promise form is the callback form wrapped
    if (callback === undefined) return new Promise((resolve, reject) => pool.stream(options, factory, (error) => (error ? reject(error) : resolve({}))));
    fields += options.headers.length / 2;
    calls++;
    const w = factory(answer);
    w.write(BODY);
    w.end();
    queueMicrotask(() => callback(null));
  },
  close: () => Promise.resolve(),
  destroy: () => Promise.resolve(),
};
for (const upstream of state.upstreams.values()) (upstream as unknown as { pool: typeof pool }).pool = pool;

const ctx: PipelineContext = {
  state: () => state,
  metrics: gw.metrics,
  accessLog: accessLog || undefined,
  logHeaders: false,
  proto: 'https',
  logger,
  clock: systemClock,
  draining: false,
};
const handle = createHandler(ctx);
const socket = { remoteAddress: '127.0.0.1' };

class FakeResponse {
  headersSent = false;
  writableEnded = false;
  writableFinished = false;
  destroyed = false;
  head: unknown;
  status = 0;
  writeHead(status: number, h: unknown) {
    this.status = status;
    this.headersSent = true;
    this.head = h;
    return this;
  }
  setHeader() {}
  write() {
    return true;
  }
  end() {
    this.writableEnded = this.writableFinished = true;
  }
  once() {
    return this;
  }
  on() {
    return this;
  }
  destroy() {}
}
function request() {
  return { method: 'GET', url: '/', httpVersion: '1.1', headers, rawHeaders, socket, complete: true, once() {}, on() {} };
}

let gcs = 0;
new PerformanceObserver((list) => (gcs += list.getEntries().length)).observe({ entryTypes: ['gc'] });

/** `n` requests, 64 in flight like the load benches, the microtasks of each batch settled before the next. */
async function run(n: number): Promise<FakeResponse> {
  let last = new FakeResponse();
  for (let i = 0; i < n; i += 64) {
    for (let j = 0; j < 64; j++) handle(request() as never, (last = new FakeResponse()) as never);
    await new Promise((r) => setImmediate(r));
  }
  return last;
}

// the first requests also fetch the issuer's JWKS (everything): answered once they pass
for (let attempt = 0; ; attempt++) {
  const check = await run(64);
  if (check.status === 200 && (check.head as Record<string, string>)['x-content-type-options'] === 'nosniff') break;
  if (attempt === 50) throw new Error(`the pipeline answered ${check.status}`);
  await new Promise((r) => setTimeout(r, 50));
}
await run(50_000); // warm-up: every function optimised

// bytes: runs short enough to fit the young generation, counted only when no collection ran (the least of three)
const allocRequests = 8192;
let bytes = NaN;
for (let round = 0; round < 3; round++) {
  global.gc?.();
  await new Promise((r) => setTimeout(r, 20)); // gc entries are delivered asynchronously
  gcs = 0;
  const before = process.memoryUsage().heapUsed;
  await run(allocRequests);
  const after = process.memoryUsage().heapUsed;
  await new Promise((r) => setTimeout(r, 20));
  if (gcs === 0) bytes = Math.min(Number.isNaN(bytes) ? Infinity : bytes, Math.round((after - before) / allocRequests));
}

if (values.sites !== undefined) await allocationSites(Number(values.sites));

const cpu = process.cpuUsage();
await run(requests);
const used = process.cpuUsage(cpu);
console.log(
  table(
    ['policies', 'headers', 'access log', 'CPU µs/request', 'bytes allocated/request', 'upstream header fields'],
    [[values.policies, values.headers, values.log, ((used.user + used.system) / requests).toFixed(2), Number.isNaN(bytes) ? 'n/a (a GC ran: give --max-semi-space-size)' : String(bytes), (fields / calls).toFixed(0)]],
  ),
);
await gw.close(0);
jwksServer?.close();

/** Where the bytes come from: self bytes per request of the functions that allocate the most. */
async function allocationSites(top: number): Promise<void> {
  const { Session } = await import('node:inspector/promises');
  const session = new Session();
  session.connect();
  await session.post('HeapProfiler.startSampling', { samplingInterval: 64, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
  const n = 20_000;
  await run(n);
  const { profile } = await session.post('HeapProfiler.stopSampling');
  session.disconnect();
  interface Node { callFrame: { functionName: string; url: string; lineNumber: number }; selfSize: number; children: Node[] }
  const sites = new Map<string, number>();
  const walk = (node: Node, stack: string) => {
    const f = node.callFrame;
    const here = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${f.lineNumber + 1}`;
    if (node.selfSize > 0) sites.set(`${here}  <  ${stack}`, (sites.get(`${here}  <  ${stack}`) ?? 0) + node.selfSize);
    for (const c of node.children) walk(c, here);
  };
  walk(profile.head as Node, '');
  const rows = [...sites].sort((a, b) => b[1] - a[1]).slice(0, top);
  console.log(table(['allocated in  <  called from', 'bytes/request'], rows.map(([k, v]) => [k, (v / n).toFixed(0)])));
}
