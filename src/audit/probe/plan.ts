// The probe's plan: what `gatehouse up` wrote to endpoints.json (and, in dev
// mode, dev-credentials.json beside it), plus the routes of the topology when
// one is given. With only --target URL, one zone with a gateway and no routes.
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { Topology } from '../../topology/index.ts';
import { trustBundlePath } from '../../pki/index.ts';
import type { DevClient, ProbePlan, RouteInfo, ZoneTarget } from './types.ts';

interface EndpointsFile {
  trustDomain?: string;
  caBundle?: string;
  ca?: string;
  zones?: Record<string, { gateway?: string; authority?: string; admin?: string; redirect?: string }>;
  services?: Record<string, { zone: string; url: string }>;
  console?: string;
  control?: string;
  controlAdmin?: string;
  vault?: string;
  up?: { admin?: string };
}

const SAMPLE_ID = '3f1b2c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d';

/** A concrete path a route matches: templates filled with a uuid, prefixes extended by one segment. */
export function samplePath(route: { path: string; match?: string }): string {
  const filled = route.path.replace(/\{[^}]+\}/g, SAMPLE_ID);
  if (route.match !== 'prefix') return filled;
  return filled.endsWith('/') ? `${filled}probe` : `${filled}/probe`;
}

export function routesOf(topology: Topology, zone: string): RouteInfo[] {
  const z = topology.zones[zone];
  if (!z) return [];
  return z.routes
    .filter((r) => !r.hosts)
    .map((r, i) => {
      const auth = r.auth as unknown;
      const accept: string[] =
        typeof auth === 'string' ? (auth === 'anonymous' ? [] : [auth]) : ((auth as { accept?: string[] }).accept ?? ['jwt']);
      const scopeRule = typeof auth === 'object' ? (auth as { scopes?: unknown }).scopes : undefined;
      const scopes = Array.isArray(scopeRule)
        ? (scopeRule as string[])
        : scopeRule && typeof scopeRule === 'object'
          ? ((Object.values(scopeRule as Record<string, string[]>)[0] ?? []).slice(0, 1))
          : [];
      const rl = r.policies.rate_limit === false ? undefined : (r.policies.rate_limit ?? z.policies.rate_limit);
      const mfa = typeof auth === 'object' && (auth as { mfa?: string }).mfa === 'required';
      const senderConstrained =
        accept.includes('jwt') && (z.authentication.senderConstrained === 'required' || (typeof auth === 'object' && (auth as { senderConstrained?: string }).senderConstrained === 'required'));
      return {
        name: r.name ?? `route-${i + 1}`,
        path: samplePath(r),
        methods: r.methods === '*' ? ['*'] : [...r.methods],
        protected: accept.length > 0,
        jwt: accept.includes('jwt'),
        // a route that needs MFA refuses a client-credentials token: forged tokens are still tried there, with no genuine control
        ...(mfa ? { mfa: true } : {}),
        scopes,
        ...(senderConstrained ? { senderConstrained: true } : {}),
        ...(rl && rl.key.length === 1 && rl.key[0] === 'address' ? { rateLimit: { limit: rl.limit, burst: rl.burst ?? 0 } } : {}),
      } satisfies RouteInfo;
    });
}

/** Reads endpoints.json (and dev-credentials.json beside it, when present). */
export function planFromEndpoints(file: string, topology?: Topology): ProbePlan {
  const e = JSON.parse(readFileSync(file, 'utf8')) as EndpointsFile;
  const dir = path.dirname(path.resolve(file));
  const read = (p: string | undefined) => (p && existsSync(p) ? readFileSync(p, 'utf8') : undefined);
  const zones: ZoneTarget[] = Object.entries(e.zones ?? {}).map(([name, z]) => ({
    name,
    ...(z.gateway ? { gateway: z.gateway } : {}),
    ...(z.authority ? { authority: z.authority } : {}),
    ...(topology?.zones[name]?.authentication.senderConstrained === 'required' ? { senderConstrained: true } : {}),
    routes: topology ? routesOf(topology, name) : [],
  }));
  const clients: Record<string, DevClient | undefined> = {};
  const creds = read(path.join(dir, 'dev-credentials.json'));
  if (creds) {
    const c = JSON.parse(creds) as { zones?: Record<string, { clients?: DevClient[] }> };
    for (const [zone, v] of Object.entries(c.zones ?? {}))
      clients[zone] = v.clients?.find((k) => k.client_secret && k.grant_types.includes('client_credentials'));
  }
  const declared = [
    ['CA', e.ca],
    ['console', e.console],
    ['control plane', e.control],
    ['control plane admin', e.controlAdmin],
    ['vault', e.vault],
    ['up admin', e.up?.admin],
    ...Object.entries(e.zones ?? {}).flatMap(([name, z]) => [
      [`${name} admin`, z.admin],
      [`${name} redirect`, z.redirect],
    ]),
  ]
    .filter(([, url]) => typeof url === 'string')
    .map(([label, url]) => ({ label: label!, url: url! }));
  return {
    ...(e.trustDomain ? { trustDomain: e.trustDomain } : {}),
    ...(read(e.caBundle) ? { caPem: read(e.caBundle) } : {}),
    ...(read(trustBundlePath(dir)) ? { trustPem: read(trustBundlePath(dir)) } : {}),
    zones,
    services: Object.entries(e.services ?? {}).map(([name, s]) => ({ name, zone: s.zone, url: s.url })),
    declared,
    clients,
  };
}

/** One URL (a gateway, or anything that speaks HTTP): no routes, no credentials. */
export function planFromTarget(url: string, topology?: Topology, zone?: string): ProbePlan {
  const u = new URL(url);
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new Error(`--target must be an http(s) URL, got ${url}`);
  const z = zone ?? (topology ? Object.keys(topology.zones).find((n) => topology.zones[n].gateway) : undefined);
  return {
    ...(topology ? { trustDomain: topology.trustDomain } : {}),
    zones: [{ name: z ?? 'target', gateway: u.origin, routes: topology && z ? routesOf(topology, z) : [] }],
    services: [],
    declared: [],
    clients: {},
    partial: true,
  };
}
