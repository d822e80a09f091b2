// The topology `gatehouse init` writes: every value checked against the
// schema's own rules before it goes into YAML (a name that would break the
// file is refused with the reason), and the result parsed back as a topology
// before anything is written.
import { createInterface } from 'node:readline/promises';
import { parseTopology } from '../topology/load.ts';
import { ConfigError } from '../topology/config-error.ts';
import { parseListen } from '../topology/schema.ts';

export interface ScaffoldInput {
  service: string;
  zone: string;
  trustDomain: string;
  upstream?: string;
  run?: string;
  sidecar?: boolean;
  path?: string;
  auth: string;
  scopes: string[];
  listen: string;
}

const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const TRUST_DOMAIN = /^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/;
const PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/;
const SCOPE = /^[A-Za-z0-9:._\-/]{1,128}$/;
const MODULE = /^[A-Za-z0-9._\-/]+\.(?:ts|js|mjs)$/;

function problems(i: ScaffoldInput): string[] {
  const p: string[] = [];
  const name = (what: string, v: string) => {
    if (!NAME.test(v)) p.push(`${what} ${JSON.stringify(v)}: lowercase letters, digits and '-', starting with a letter, at most 63`);
  };
  name('service', i.service);
  name('zone', i.zone);
  if (!TRUST_DOMAIN.test(i.trustDomain)) p.push(`trust domain ${JSON.stringify(i.trustDomain)}: lowercase letters, digits, '.' and '-' (a DNS-like name)`);
  if (i.upstream !== undefined && i.run !== undefined) p.push('--upstream and --run: give one (an address where the service listens, or a module up starts)');
  if (i.upstream === undefined && i.run === undefined) p.push('--upstream URL or --run MODULE: where the service is');
  if (i.upstream !== undefined && !/^https?:\/\/[A-Za-z0-9.\-[\]:]+\/?$/.test(i.upstream)) p.push(`upstream ${JSON.stringify(i.upstream)}: http(s)://host:port with no path`);
  if (i.run !== undefined && !MODULE.test(i.run)) p.push(`run ${JSON.stringify(i.run)}: a relative .ts/.js/.mjs path of letters, digits, '.', '_', '-' and '/'`);
  if (i.sidecar && i.run === undefined) p.push('--sidecar goes with --run (up starts the application and the sidecar in front of it)');
  if (i.path !== undefined && (!PATH.test(i.path) || /\/\.\.?(\/|$)|\/\//.test(i.path))) p.push(`path ${JSON.stringify(i.path)}: starts with /, URL path characters only, no empty, '.' or '..' segments`);
  if (!['anonymous', 'jwt'].includes(i.auth)) p.push(`auth ${JSON.stringify(i.auth)}: one of anonymous, jwt`);
  for (const s of i.scopes) if (!SCOPE.test(s)) p.push(`scope ${JSON.stringify(s)}: letters, digits and : . _ - / (at most 128)`);
  if (i.scopes.length > 0 && i.auth !== 'jwt') p.push('--scope needs --auth jwt');
  const listen = parseListen(i.listen);
  if (typeof listen === 'string') p.push(`listen: ${listen}`);
  return p;
}

/** The topology for `i`, or why it cannot be written. */
export function scaffold(i: ScaffoldInput, file = 'gatehouse.yaml'): { yaml: string; next: string } | { error: string } {
  const found = problems(i);
  if (found.length > 0) return { error: found.join('\n') };
  const prefix = (i.path ?? `/api/${i.service}/`).replace(/\/?$/, '/');
  const port = (parseListen(i.listen) as { port: number }).port;
  const jwt = i.auth === 'jwt';
  const q = (s: string) => `'${s.replace(/'/g, "''")}'`;
  const lines = [
    `# Written by gatehouse init. Reference: docs/reference/configuration.md;`,
    `# editors complete this file with the JSON Schema: gatehouse schema > gatehouse.schema.json`,
    `# yaml-language-server: $schema=gatehouse.schema.json`,
    'version: 1',
    `trustDomain: ${i.trustDomain}`,
    '',
    'zones:',
    `  ${i.zone}:`,
    '    gateway:',
    `      listen: ${q(i.listen)}`,
    '      tls: dev # a certificate from a dev CA in the state dir; cert/key files in production',
    '      admin:',
    "        listen: '127.0.0.1:0' # metrics and health, loopback only",
    ...(jwt
      ? [
          '    authority:',
          `      listen: '127.0.0.1:${port === 0 ? 0 : port + 1}'`,
          `      scopes: [${i.scopes.map(q).join(', ')}]`,
        ]
      : []),
    '    routes:',
    `      - name: ${i.service}`,
    `        path: ${q(prefix)}`,
    '        match: prefix',
    '        methods: [GET, HEAD, POST, PUT, PATCH, DELETE]',
    `        service: ${i.service}`,
    jwt ? `        auth: ${i.scopes.length > 0 ? `{ accept: [jwt], scopes: [${i.scopes.map(q).join(', ')}] }` : 'jwt'}` : '        auth: anonymous',
    ...(jwt ? [] : ['        policies:', '          rate_limit: { limit: 120, windowSeconds: 60, burst: 30, key: [address] }']),
    '',
    'services:',
    `  ${i.service}:`,
    `    zone: ${i.zone}`,
    i.upstream !== undefined ? `    upstream: ${q(i.upstream)}` : `    run: ${q(i.run!)}`,
    ...(i.sidecar ? ['    sidecar: true'] : []),
    '    allow:',
    '      - caller: gateway # only the gateway of its zone, exactly what the route sends',
    '        methods: [GET, HEAD, POST, PUT, PATCH, DELETE]',
    `        paths: [{ path: ${q(prefix.replace(/\/$/, '') || '/')}, match: prefix }]`,
    '',
  ];
  const yaml = lines.join('\n');
  try {
    parseTopology(yaml, 'gatehouse.yaml');
  } catch (e) {
    return { error: e instanceof ConfigError ? `the scaffold does not validate:\n${e.message}` : String(e) };
  }
  const next = [
    'next:',
    `  gatehouse validate ${file}`,
    `  gatehouse up --config ${file}`,
    ...(jwt ? ['  gatehouse token --zone ' + i.zone + '        # a test token (dev mode)'] : []),
    `  curl --cacert .gatehouse/tls/dev-ca.pem https://${i.listen.replace(/:0$/, ':<port>')}${prefix}`,
    '',
  ].join('\n');
  return { yaml, next };
}

/** Asks in the terminal for what the flags did not give. */
export async function askMissing(o: { service?: string; zone: string; upstream?: string; run?: string; auth: string; path?: string }): Promise<Partial<typeof o>> {
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const ask = async (q: string, def?: string) => (await rl.question(def ? `${q} [${def}]: ` : `${q}: `)).trim() || def || '';
    const service = await ask('service name');
    const zone = await ask('zone', o.zone);
    const where = o.upstream ?? o.run ?? (await ask('where it listens (http://host:port), or a module to run (.ts/.js)', 'http://127.0.0.1:3000'));
    const auth = await ask('auth (anonymous | jwt)', o.auth);
    const path = await ask('path prefix', o.path ?? `/api/${service}/`);
    return { service, zone, auth, path, ...(/^https?:/.test(where) ? { upstream: where } : { run: where }) };
  } finally {
    rl.close();
  }
}
