// Policy benchmark (issue: gateway policies). Same setup as bench/gateway.ts,
// over HTTPS: plain proxy; + JWT (EdDSA) with the verified-token cache; + JWT
// without it; + rate limit in memory; + rate limit in Redis; + everything
// (JWT, rate limit, identity token, access log, metrics); and HAProxy with
// jwt_verify on an ES256 token and a stick-table rate limit. Targets are started
// first and their rounds interleaved; CPU µs per request is reported beside
// req/s (it moves less on a busy machine). Not a test.
//
//   sh scripts/node.sh bench/policies.ts [--seconds 10] [--runs 3] [--connections 64] [--only a,b]
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir, availableParallelism } from 'node:os';
import { Socket } from 'node:net';
import https from 'node:https';
import path from 'node:path';
import { SignJWT, generateKeyPair, exportJWK, exportSPKI } from 'jose';
import { benchArgs, benchTopology, startBenchGateway, ensureTools, freePort, startProc, startNginx, upstreamServerBlock, wrk, table, summarise, roundRatio, type Proc } from './lib.ts';
import { openDevCa } from '../src/shared/dev-ca.ts';
import { Agent, request } from 'undici';

const { seconds, runs, connections, only } = benchArgs();

const root = path.join(import.meta.dirname, '..');
const dir = mkdtempSync(path.join(tmpdir(), 'gh-bench-policies-'));
const tools = ensureTools({ wrk: 'wrk', nginx: 'nginx-light', haproxy: 'haproxy', taskset: 'util-linux' });
if (!tools.has('wrk') || !tools.has('nginx')) {
  process.stderr.write('bench: wrk and nginx are required and could not be installed\n');
  process.exit(1);
}
const pin = tools.has('taskset') && availableParallelism() > 1;
const LOAD_CPU = '0';
const PROXY_CPU = '1';

const redisUp = await new Promise<boolean>((resolve) => {
  const s = new Socket();
  s.once('error', () => resolve(false));
  s.connect(6379, '127.0.0.1', () => {
    s.destroy();
    resolve(true);
  });
});

// a token issuer with an HTTPS JWKS (EdDSA for Gatehouse, ES256 for HAProxy)
const ca = await openDevCa(dir, 'bench.local');
const serverPair = await ca.issueServer(['127.0.0.1', 'localhost']);
const ed = await generateKeyPair('EdDSA', { crv: 'Ed25519' });
const es = await generateKeyPair('ES256');
const jwks = { keys: [{ ...(await exportJWK(ed.publicKey)), kid: 'bench-ed', alg: 'EdDSA', use: 'sig' }] };
const jwksServer = https.createServer(serverPair, (_req, res) => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(JSON.stringify(jwks));
});
await new Promise<void>((r) => jwksServer.listen(0, '127.0.0.1', r));
const issuer = `https://127.0.0.1:${(jwksServer.address() as { port: number }).port}`;
const now = Math.floor(Date.now() / 1000);
const claims = { iss: issuer, aud: 'urn:bench', sub: 'bench-user', client_id: 'bench-client', scope: 'orders:read', iat: now, exp: now + 3600, jti: 'bench-1' };
const edToken = await new SignJWT(claims).setProtectedHeader({ alg: 'EdDSA', kid: 'bench-ed', typ: 'at+jwt' }).sign(ed.privateKey);
const esToken = await new SignJWT(claims).setProtectedHeader({ alg: 'ES256', typ: 'at+jwt' }).sign(es.privateKey);
writeFileSync(path.join(dir, 'es256.pub.pem'), await exportSPKI(es.publicKey));
writeFileSync(path.join(dir, 'haproxy.pem'), serverPair.cert + serverPair.key);

interface Variant {
  auth: boolean;
  cache: boolean;
  rate?: 'memory' | 'redis';
  log: boolean;
}

function gatehouseYaml(port: number, upstream: string, v: Variant): string {
  const rate = v.rate
    ? `\n        policies: { rate_limit: { limit: 1000000000, windowSeconds: 60, key: [address]${v.rate === 'redis' ? ", store: { type: redis, url: 'redis://127.0.0.1:6379', prefix: 'gh-bench:' }" : ''} } }`
    : '';
  return benchTopology(port, upstream, {
    accessLog: v.log,
    zone: `\n    authentication:\n      issuers: [{ issuer: '${issuer}', jwksUri: '${issuer}/jwks', audiences: [urn:bench] }]\n      tokenCache: ${v.cache ? 10000 : 0}`,
    route: `auth: ${v.auth ? '{ scopes: [orders:read] }' : 'anonymous'}${rate}`,
  });
}

function gatehouse(port: number, upstream: string, v: Variant): Promise<Proc> {
  return startBenchGateway(root, dir, port, gatehouseYaml(port, upstream, v), { cpus: pin ? PROXY_CPU : undefined });
}

interface Target {
  name: string;
  note: string;
  token?: string;
  start: (port: number, upstream: string) => Promise<Proc>;
}

const targets: Target[] = [
  { name: 'plain', note: 'anonymous route, no policies', start: (p, u) => gatehouse(p, u, { auth: false, cache: true, log: false }) },
  { name: 'plain + log', note: 'the same with the access log on', start: (p, u) => gatehouse(p, u, { auth: false, cache: true, log: true }) },
  { name: '+jwt (cache)', note: 'EdDSA, verified-token cache', token: edToken, start: (p, u) => gatehouse(p, u, { auth: true, cache: true, log: false }) },
  { name: '+jwt (no cache)', note: 'EdDSA, verified on every request', token: edToken, start: (p, u) => gatehouse(p, u, { auth: true, cache: false, log: false }) },
  { name: '+rate limit (memory)', note: 'GCRA per address', start: (p, u) => gatehouse(p, u, { auth: false, cache: true, rate: 'memory', log: false }) },
  ...(redisUp
    ? [{ name: '+rate limit (redis)', note: 'one EVALSHA per request', start: (p: number, u: string) => gatehouse(p, u, { auth: false, cache: true, rate: 'redis', log: false }) }]
    : []),
  {
    name: 'everything (memory)',
    note: 'jwt + scopes + rate limit + identity token + access log',
    token: edToken,
    start: (p, u) => gatehouse(p, u, { auth: true, cache: true, rate: 'memory', log: true }),
  },
  ...(redisUp
    ? [
        {
          name: 'everything (redis)',
          note: 'same, rate limit in Redis',
          token: edToken,
          start: (p: number, u: string) => gatehouse(p, u, { auth: true, cache: true, rate: 'redis', log: true }),
        },
      ]
    : []),
  ...(tools.has('haproxy')
    ? [
        {
          name: 'haproxy',
          note: 'TLS, plain proxy',
          start: (p: number, u: string) => haproxy(p, u, false),
        },
        {
          name: 'haproxy +jwt +rate',
          note: 'jwt_verify ES256 + stick-table',
          token: esToken,
          start: (p: number, u: string) => haproxy(p, u, true),
        },
      ]
    : []),
];

function haproxy(port: number, upstream: string, jwt: boolean): Promise<Proc> {
  const file = path.join(dir, `haproxy-${port}.cfg`);
  const rules = jwt
    ? `  http-request set-var(txn.bearer) http_auth_bearer
  http-request set-var(txn.alg) var(txn.bearer),jwt_header_query('$.alg')
  http-request deny deny_status 401 unless { var(txn.alg) -m str ES256 }
  http-request deny deny_status 401 unless { var(txn.bearer),jwt_verify(txn.alg,"${dir}/es256.pub.pem") -m int 1 }
  stick-table type ip size 100k expire 60s store http_req_rate(60s)
  http-request track-sc0 src
  http-request deny deny_status 429 if { sc_http_req_rate(0) gt 1000000000 }
`
    : '';
  writeFileSync(
    file,
    `global\n  nbthread 1\n  maxconn 8000\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n  http-reuse always\nfrontend f\n  bind 127.0.0.1:${port} ssl crt ${dir}/haproxy.pem alpn http/1.1\n${rules}  default_backend b\nbackend b\n  server s1 ${new URL(upstream).host}\n`,
  );
  return startProc(['haproxy', '-f', file, '-db'], { cpus: pin ? PROXY_CPU : undefined, port });
}

const warmAgent = new Agent({ connect: { ca: ca.caPem, rejectUnauthorized: false } });
const upstreamPort = await freePort();
const upstream = await startNginx(dir, pin, upstreamPort, 1, upstreamServerBlock(upstreamPort), LOAD_CPU);
const upstreamUrl = `http://127.0.0.1:${upstreamPort}`;

interface Row {
  name: string;
  note: string;
  rps: number;
  p50: number;
  p99: number;
  /** CPU per request of the proxy's processes (µs): steadier than req/s on a busy machine */
  cpuUs: number;
  errors: number;
}
const rows: Row[] = [];
process.stderr.write(`bench: ${runs} × ${seconds}s per target over HTTPS, wrk -t1 -c${connections}; Redis ${redisUp ? 'up' : 'not reachable: Redis rows left out'}\n`);
// as bench/gateway.ts: every target started first, then the rounds interleaved (A, B, C, A, B, C …)
// so a machine whose speed drifts does not favour whichever target ran in its fast minutes
interface Running {
  t: Target;
  url: string;
  headers: string[];
  proc: Proc;
  results: ReturnType<typeof wrk>[];
}
const running: Running[] = [];
for (const t of targets) {
  if (only && !only.includes(t.name)) continue;
  const port = await freePort();
  let proc: Proc | undefined;
  try {
    proc = await t.start(port, upstreamUrl);
    const url = `https://127.0.0.1:${port}/api/bench`;
    const headers = t.token ? [`Authorization: Bearer ${t.token}`] : [];
    // one request first, from this (async) process: the gateway fetches the issuer's
    // JWKS now, because this process serves it and is blocked while wrk runs
    const first = await request(url, { dispatcher: warmAgent, headers: t.token ? { authorization: `Bearer ${t.token}` } : {} });
    await first.body.dump();
    if (first.statusCode !== 200) throw new Error(`the first request answered ${first.statusCode}`);
    wrk(url, { seconds: 2, connections, cpus: pin ? LOAD_CPU : undefined, headers });
    running.push({ t, url, headers, proc, results: [] });
  } catch (error) {
    process.stderr.write(`bench: ${t.name} failed: ${(error as Error).message.slice(0, 300)}\n`);
    rows.push({ name: t.name, note: 'failed to run', rps: NaN, p50: NaN, p99: NaN, cpuUs: NaN, errors: NaN });
    await proc?.stop();
  }
}
// within a round the two targets of the main check run one right after the other (the table keeps its order)
const PAIRED_FIRST = ['plain', 'everything (memory)'];
const rank = (r: Running) => (PAIRED_FIRST.includes(r.t.name) ? PAIRED_FIRST.indexOf(r.t.name) : PAIRED_FIRST.length);
const roundOrder = [...running].sort((a, b) => rank(a) - rank(b));
for (let round = 0; round < runs; round++)
  for (const r of roundOrder) r.results.push(wrk(r.url, { seconds, connections, cpus: pin ? LOAD_CPU : undefined, headers: r.headers, pid: r.proc.child.pid }));
for (const { t, proc, results } of running) {
  const row = summarise(t.name, t.note, results);
  rows.push(row);
  process.stderr.write(
    `bench: ${t.name}: ${Math.round(row.rps)} req/s, p99 ${row.p99.toFixed(2)} ms, ${row.cpuUs.toFixed(1)} µs CPU/req (rounds: ${results.map((r) => `${Math.round(r.rps)} @ ${r.cpuUs.toFixed(0)} µs`).join(', ')})\n`,
  );
  await proc.stop();
}
await upstream.stop();
jwksServer.close();
await warmAgent.close();

const by = (n: string) => rows.find((r) => r.name === n);
const plain = by('plain');
console.log(`\nPolicy benchmark — ${new Date().toISOString()} — Node ${process.version}, ${runs}×${seconds}s medians, wrk -t1 -c${connections}, HTTPS`);
console.log(table(['target', 'setup', 'req/s', 'p50 ms', 'p99 ms', 'CPU µs/req', 'x plain', 'errors'], rows.map((r) => [r.name, r.note, r.rps, r.p50, r.p99, r.cpuUs, plain ? r.rps / plain.rps : NaN, r.errors])));
const ratio = (a?: Row, b?: Row) => (a && b ? a.rps / b.rps : NaN);
const rounds = (name: string) => running.find((r) => r.t.name === name)?.results;
/** The same ratio from CPU per request (one saturated core serves 1/CPU requests a second): b's CPU over a's. */
const cpuRatio = (a?: Row, b?: Row) => (a && b ? b.cpuUs / a.cpuUs : NaN);
const checks: [string, number, number][] = [
  ['everything (memory) / plain', ratio(by('everything (memory)'), plain), 0.85],
  ['the same, median of the rounds\' ratios', roundRatio(rounds('everything (memory)'), rounds('plain')), 0.85],
  ['the same, from CPU per request (plain µs / everything µs)', cpuRatio(by('everything (memory)'), plain), 0.85],
  ['everything (memory) / haproxy +jwt +rate', ratio(by('everything (memory)'), by('haproxy +jwt +rate')), 1.0],
  ['everything (redis) / plain', ratio(by('everything (redis)'), plain), 0.7],
];
// the policies' own cost, with the access log on both sides (reported, no target)
const logged = by('plain + log');
const shares: [string, number][] = [
  ['plain + log / plain (the access log alone)', ratio(logged, plain)],
  ['everything (memory) / plain + log (the policies alone)', ratio(by('everything (memory)'), logged)],
  ['the same, from CPU per request', cpuRatio(by('everything (memory)'), logged)],
  ['everything (redis) / plain + log', ratio(by('everything (redis)'), logged)],
];
console.log(
  '\n' +
    table(
      ['target check', 'measured', 'target', 'met'],
      [
        ...checks.map(([n, v, t]) => [n, v, `≥ ${t}`, Number.isNaN(v) ? '-' : v >= t ? 'yes' : 'NO']),
        ...shares.map(([n, v]) => [n, v, 'report', '-']),
      ],
    ),
);
