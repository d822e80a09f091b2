// `gatehouse audit`: the posture of a topology, read without running it. Each
// finding names its rule (rules.ts), the topology field and its line, and the
// fix. A topology that does not load is not audited further: each of the
// loader's errors is a finding (auditConfigError), unknown callers and egress
// targets under their own rules.
import { existsSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import type { LoadedTopology, RouteConfig, ZoneConfig } from '../topology/index.ts';
import { ALL_METHODS } from '../topology/index.ts';
import { formatPath, type ConfigError } from '../topology/config-error.ts';
import { routeMethodGaps } from '../topology/resolve.ts';
import { cidrHasHostBits, egressEndpoint } from '../deploy/index.ts';
import { ruleNamed, type RuleName, type Severity } from './rules.ts';

export interface Finding {
  ruleId: string;
  rule: RuleName;
  severity: Severity;
  /** The topology file, as given. */
  file: string;
  line: number;
  column: number;
  /** The field, like zones.public.routes[0].auth. */
  path: string;
  message: string;
  fix: string;
}

export interface AuditReport {
  file: string;
  findings: Finding[];
  summary: Record<Severity, number>;
}

const WRITE_METHODS = ['POST', 'PUT', 'PATCH', 'DELETE'];
const MAX_TOKEN_SECONDS = 15 * 60;

export function auditTopology(loaded: LoadedTopology, file: string): AuditReport {
  const t = loaded.topology;
  const findings: Finding[] = [];
  const find = (rule: RuleName, at: (string | number)[], message: string) => {
    const r = ruleNamed(rule);
    const { line, column } = loaded.locate?.(at) ?? { line: 1, column: 1 };
    findings.push({ ruleId: r.id, rule, severity: r.severity, file, line, column, path: formatPath(at), message, fix: r.fix });
  };
  const privateZones = new Set(
    Object.values(t.services).flatMap((s) => s.egress.flatMap((e) => (e.startsWith('gateway:') && e.slice(8) !== s.zone ? [e.slice(8)] : []))),
  );

  for (const [zoneName, zone] of Object.entries(t.zones)) {
    const at = ['zones', zoneName];
    const ingress = zone.ingress;
    if (zone.gateway?.plaintext) find('plaintext-listener', [...at, 'gateway', 'plaintext'], `the ${zoneName} gateway serves plain HTTP on ${zone.gateway.listen}`);
    if (!zone.authority) find('zone-without-authority', at, `zone ${zoneName} has no authority: its tokens come from elsewhere or nowhere`);
    else if (zone.authority.accessTokenTtl > MAX_TOKEN_SECONDS)
      find('token-lifetime-over-15-minutes', [...at, 'authority', 'accessTokenTtl'], `access tokens of zone ${zoneName} live ${zone.authority.accessTokenTtl} s`);
    if (zone.gateway && privateZones.has(zoneName) && !(ingress && (ingress.clientCertificate === 'required' || (ingress.sources ?? []).length > 0)))
      find(
        'private-zone-ingress-not-locked',
        ingress ? [...at, 'ingress'] : [...at, 'gateway'],
        `zone ${zoneName} is called by other zones' services (egress gateway:${zoneName}), yet its gateway admits any client on the network`,
      );
    if (zone.authentication.revocationFeed?.whenStale === 'accept')
      find('revocation-feed-fails-open', [...at, 'authentication', 'revocationFeed', 'whenStale'], `zone ${zoneName} accepts revoked tokens while its feed is unreachable`);
    forEachCidr(zone, (cidr, where) => {
      if (cidrHasHostBits(cidr)) find('cidr-host-bits', [...at, ...where], `${cidr} has host bits set`);
    });
    zone.routes.forEach((route, i) => auditRoute(zoneName, zone, route, ['zones', zoneName, 'routes', i], privateZones.has(zoneName) || ingress !== undefined, find));
    for (const { inner, outer } of protectedUnderAnonymous(zone.routes)) {
      const r = zone.routes[inner];
      const o = zone.routes[outer];
      find(
        'protected-route-under-anonymous-prefix',
        ['zones', zoneName, 'routes', inner, 'path'],
        `route ${r.name ?? r.path} needs a credential, but ${r.match === 'exact' ? `${r.path}/ and ` : ''}${r.path} in other letters match the anonymous prefix route ${o.name ?? o.path}`,
      );
    }
  }

  for (const gap of routeMethodGaps(t)) find('route-method-refused', gap.path, gap.message);

  const routed = new Set(Object.values(t.zones).flatMap((z) => z.routes.map((r) => r.service)));
  for (const [name, service] of Object.entries(t.services)) {
    const at = ['services', name];
    if (service.upstream?.startsWith('http://') && !service.sidecar)
      find('plaintext-upstream', [...at, 'upstream'], `${name} is reached at ${service.upstream}, in plain HTTP`);
    else if (service.upstream !== undefined && service.run === undefined && service.allow.length === 0)
      find('upstream-outside-mesh', [...at, 'upstream'], `${name} is reached at ${service.upstream} without the mesh`);
    if (routed.has(name) && service.allow.length === 0)
      find('routed-service-without-allow', at, `a gateway routes to ${name}, which declares no allow edge`);
    if (service.sidecar && service.upstream !== undefined) find('sidecar-with-upstream', [...at, 'upstream'], `${name} has sidecar: true and an upstream`);
    if (service.run !== undefined && !isFile(path.resolve(loaded.dir, service.run))) find('run-module-missing', [...at, 'run'], `${service.run} does not exist next to the topology`);

    service.egress.forEach((entry, i) => {
      const where = [...at, 'egress', i];
      const gatewayZone = /^gateway:(.+)$/.exec(entry)?.[1];
      if (gatewayZone !== undefined) {
        return; // a zone without a gateway is refused by the loader (auditConfigError)
      }
      const endpoint = egressEndpoint(entry);
      if (endpoint) {
        // the unspecified address: whatever the service connects to
        if (isIP(endpoint.host) !== 0 && /^(0\.0\.0\.0|[0:]+)$/.test(endpoint.host)) find('egress-to-anywhere', where, `${name} may call ${entry}: any address`);
        return;
      }
      const target = t.services[entry];
      if (!target) return; // refused by the loader (auditConfigError)
      if (target.zone !== service.zone)
        find('cross-zone-without-gateway', where, `${name} (zone ${service.zone}) calls ${entry} (zone ${target.zone}) directly; use egress gateway:${target.zone}`);
      else if (!target.allow.some((e) => e.caller === name)) find('one-sided-edge', where, `${name} may call ${entry}, but ${entry} allows no call from ${name}`);
    });
    service.allow.forEach((edge, i) => {
      if (edge.caller === 'gateway') return;
      const where = [...at, 'allow', i, 'caller'];
      const caller = t.services[edge.caller];
      if (!caller) return; // refused by the loader (auditConfigError)
      if (caller.zone !== service.zone)
        find('cross-zone-without-gateway', where, `${name} (zone ${service.zone}) allows ${edge.caller} of zone ${caller.zone} directly; callers of another zone come through this zone's gateway`);
      else if (!caller.egress.includes(name)) find('one-sided-edge', where, `${name} allows ${edge.caller}, whose egress does not list ${name}`);
    });
  }

  findings.sort((a, b) => a.line - b.line || a.column - b.column || a.ruleId.localeCompare(b.ruleId));
  const summary: Record<Severity, number> = { error: 0, warning: 0, note: 0 };
  for (const f of findings) summary[f.severity]++;
  return { file, findings, summary };
}

function auditRoute(
  zoneName: string,
  zone: ZoneConfig,
  route: RouteConfig,
  at: (string | number)[],
  privateZone: boolean,
  find: (rule: RuleName, at: (string | number)[], message: string) => void,
): void {
  const name = route.name ?? route.path;
  const methods = route.methods === '*' ? ALL_METHODS : route.methods;
  const writes = methods.filter((m) => WRITE_METHODS.includes(m));
  const rateLimited = route.policies.rate_limit !== undefined ? route.policies.rate_limit !== false : zone.policies.rate_limit !== undefined;
  if (route.auth === 'anonymous') {
    if (!rateLimited) find('anonymous-route-without-rate-limit', [...at, 'auth'], `route ${name} of zone ${zoneName} is anonymous and unlimited`);
    if (writes.length > 0) find('anonymous-write', [...at, 'methods'], `route ${name} takes ${writes.join(', ')} from anyone`);
    return;
  }
  const auth = typeof route.auth === 'string' ? undefined : route.auth;
  if (writes.length > 0 && !privateZone && auth?.mfa !== 'required')
    find('write-without-mfa', [...at, 'methods'], `route ${name} of zone ${zoneName} takes ${writes.join(', ')} without MFA`);
  if (auth?.shadow) find('route-auth-shadow', [...at, 'auth', 'shadow'], `route ${name} lets refused requests pass (shadow)`);
  if (auth?.apiKeyQuery) find('api-key-in-query', [...at, 'auth', 'apiKeyQuery'], `route ${name} reads API keys from ?${auth.apiKeyQuery}=`);
}

/**
 * Pairs of routes where one needs a credential and an anonymous prefix route
 * covers its path for some of the same methods and hosts: a variant of the path
 * the router does not treat as the protected one lands on the anonymous route.
 */
function protectedUnderAnonymous(routes: readonly RouteConfig[]): { inner: number; outer: number }[] {
  const pairs: { inner: number; outer: number }[] = [];
  routes.forEach((outer, o) => {
    if (outer.auth !== 'anonymous' || outer.match !== 'prefix') return;
    const base = outer.path.endsWith('/') ? outer.path : `${outer.path}/`;
    routes.forEach((inner, i) => {
      if (inner.auth === 'anonymous' || i === o) return;
      if (inner.path !== outer.path && !inner.path.startsWith(base)) return;
      const methods = (r: RouteConfig) => (r.methods === '*' ? ALL_METHODS : r.methods);
      if (!methods(inner).some((m) => methods(outer).includes(m))) return;
      // routes for different host names never see each other's requests
      if (inner.hosts && outer.hosts && !inner.hosts.some((h) => h.startsWith('*.') || outer.hosts!.some((x) => x.startsWith('*.') || x.toLowerCase() === h.toLowerCase()))) return;
      pairs.push({ inner: i, outer: o });
    });
  });
  return pairs;
}

/** Every CIDR a zone declares (trusted proxies, address rules, ingress sources), with where. */
function forEachCidr(zone: ZoneConfig, visit: (cidr: string, at: (string | number)[]) => void): void {
  zone.gateway?.trustedProxies.forEach((c, i) => visit(c, ['gateway', 'trustedProxies', i]));
  const rules = (r: { allow?: string[]; deny: string[] } | false | undefined, at: (string | number)[]) => {
    if (!r) return;
    r.allow?.forEach((c, i) => visit(c, [...at, 'allow', i]));
    r.deny.forEach((c, i) => visit(c, [...at, 'deny', i]));
  };
  rules(zone.policies.ip_rules, ['policies', 'ip_rules']);
  zone.routes.forEach((route, i) => rules(route.policies.ip_rules, ['routes', i, 'policies', 'ip_rules']));
  zone.ingress?.sources?.forEach((c, i) => visit(c, ['ingress', 'sources', i]));
}

function isFile(p: string): boolean {
  return existsSync(p) && statSync(p).isFile();
}

/** A topology that does not load: each loader error as a finding, at its line. */
export function auditConfigError(error: ConfigError, file: string): AuditReport {
  const findings: Finding[] = error.issues.map((i) => {
    const name: RuleName = /\.caller$/.test(i.path) && i.message.startsWith('unknown caller')
      ? 'unknown-caller'
      : /\.egress\[\d+\]$/.test(i.path) && i.message.startsWith('unknown')
        ? 'unknown-egress-target'
        : 'invalid-config';
    const r = ruleNamed(name);
    return { ruleId: r.id, rule: name, severity: r.severity, file: i.file ?? file, line: i.line, column: i.column, path: i.path, message: i.message, fix: r.fix };
  });
  return { file, findings, summary: { error: findings.length, warning: 0, note: 0 } };
}
