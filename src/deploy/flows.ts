// Every network flow a topology declares, independent of where things run:
// the one model both exports (nftables per host, Kubernetes NetworkPolicies)
// turn into rules. Deny by default: what is not a flow here is refused by
// both. A flow the mesh would refuse anyway (an egress entry the target's
// `allow` edges do not answer, a service calling another zone's service
// directly) is not a flow: the firewall refuses it a layer below the mesh.
import type { Topology, ZoneConfig } from '../topology/index.ts';
import { parseListen } from '../topology/index.ts';
import { addressBytes, ingressCidrProblem } from '../topology/primitives.ts';
import { isIP } from 'node:net';

/** A Gatehouse component: a service name, `gateway:<zone>`, `authority:<zone>`, `gatehouse:ca`, `gatehouse:control`. */
export type ComponentId = string;

export const CA: ComponentId = 'gatehouse:ca';
export const CONTROL: ComponentId = 'gatehouse:control';
/** The vault (encryption, tokenization over mTLS), when the topology has a vault section. */
export const VAULT: ComponentId = 'gatehouse:vault';

export type TopologyPath = (string | number)[];

export interface Component {
  id: ComponentId;
  kind: 'gateway' | 'authority' | 'service' | 'ca' | 'control' | 'vault';
  /** The zone of a gateway, authority or service. */
  zone?: string;
  /**
   * TCP ports the topology gives its listeners, by listener (main, redirect,
   * and a gateway's admin listener when the topology puts it off loopback);
   * absent: none fixed (port 0, a `run` service, the CA), or admin on loopback.
   */
  ports: { main?: number; redirect?: number; admin?: number };
  /** The address the topology has it listen on (a listen host, an upstream's host), and where; absent: none given. */
  bind?: { host: string; at: TopologyPath };
  /** Where it is declared. */
  at: TopologyPath;
}

/** Who a flow comes from: a component, any client, or clients of a CIDR (a zone's ingress). */
export type Source = { component: ComponentId } | { anywhere: true } | { cidr: string };

export type Listener = 'main' | 'redirect' | 'admin';

/** Where a flow goes: a listener of a component, or an endpoint outside the topology (egress host:port, a database, Redis, a log sink). */
export type Target = { component: ComponentId; listener: Listener } | { outside: { host: string; port: number } };

export interface Flow {
  from: Source;
  to: Target;
  /** What the flow is for, said in the exported rules' comments. */
  why: string;
  /** The topology field that declares it. */
  at: TopologyPath;
  /** Made by the machine, not the component (a log shipper): a host's firewall allows it, no pod's network policy. */
  host?: true;
}

export interface DeploymentModel {
  components: Map<ComponentId, Component>;
  flows: Flow[];
  /** Flows no rule can express safely (an ingress CIDR wider than /8, an outside endpoint given by name): errors, never a permissive rule. */
  problems: { at: TopologyPath; message: string }[];
}

export function deploymentFlows(t: Topology): DeploymentModel {
  const components = new Map<ComponentId, Component>();
  const flows: Flow[] = [];
  const add = (c: Component) => components.set(c.id, c);
  const portOf = (listen: string | undefined) => {
    if (listen === undefined) return undefined;
    const parsed = parseListen(listen);
    return typeof parsed === 'string' || parsed.port === 0 ? undefined : parsed.port;
  };

  // the CA and the control plane are declared where a host runs them
  const runAt = (id: ComponentId): TopologyPath => {
    const host = Object.keys(t.hosts).find((h) => Object.hasOwn(t.hosts[h].runs, id));
    return host === undefined ? ['hosts'] : ['hosts', host, 'runs', id];
  };
  add({ id: CA, kind: 'ca', ports: {}, at: runAt(CA) });
  add({ id: CONTROL, kind: 'control', ports: {}, at: runAt(CONTROL) });
  if (t.vault) add({ id: VAULT, kind: 'vault', ports: { main: portOf(t.vault.listen) }, bind: bindOf(t.vault.listen, ['vault', 'listen']), at: ['vault'] });
  for (const [zoneName, zone] of Object.entries(t.zones)) {
    if (zone.gateway)
      add({
        id: `gateway:${zoneName}`,
        kind: 'gateway',
        zone: zoneName,
        ports: { main: portOf(zone.gateway.listen), redirect: portOf(zone.gateway.redirectListen), admin: adminPort(zone.gateway.admin.listen) },
        bind: bindOf(zone.gateway.listen, ['zones', zoneName, 'gateway', 'listen']),
        at: ['zones', zoneName, 'gateway'],
      });
    if (zone.authority)
      add({
        id: `authority:${zoneName}`,
        kind: 'authority',
        zone: zoneName,
        ports: { main: portOf(zone.authority.listen) },
        bind: bindOf(zone.authority.listen, ['zones', zoneName, 'authority', 'listen']),
        at: ['zones', zoneName, 'authority'],
      });
  }
  for (const [name, service] of Object.entries(t.services))
    add({
      id: name,
      kind: 'service',
      zone: service.zone,
      ports: { main: upstreamPort(service.upstream) },
      bind: service.upstream === undefined ? undefined : { host: new URL(service.upstream).hostname.replace(/^\[|\]$/g, ''), at: ['services', name, 'upstream'] },
      at: ['services', name],
    });

  const problems: DeploymentModel['problems'] = [];
  const flow = (from: Source, to: Target, why: string, at: TopologyPath) => flows.push({ from, to, why, at });
  const to = (component: ComponentId, listener: Listener = 'main'): Target => ({ component, listener });

  for (const [zoneName, zone] of Object.entries(t.zones)) {
    const gateway = `gateway:${zoneName}`;
    const authority = `authority:${zoneName}`;
    const ingress = zone.ingress;
    // clients outside the topology reach the zone's gateway and authority: from its ingress sources when it
    // lists them; from nowhere when it admits workload certificates only (the workloads have flows of their own);
    // else from anywhere
    const outside: { source: Source; at: TopologyPath }[] = ingress?.sources
      ? ingress.sources.map((cidr, i) => ({ source: { cidr }, at: ['zones', zoneName, 'ingress', 'sources', i] }))
      : ingress?.clientCertificate === 'required'
        ? []
        : [{ source: { anywhere: true }, at: [] }];
    if (zone.gateway) {
      for (const o of outside) {
        flow(o.source, to(gateway), `clients of zone ${zoneName} reach its gateway`, o.at.length ? o.at : ['zones', zoneName, 'gateway', 'listen']);
        if (zone.gateway.redirectListen)
          flow(o.source, to(gateway, 'redirect'), `clients of zone ${zoneName} are redirected to HTTPS`, ['zones', zoneName, 'gateway', 'redirectListen']);
      }
      const routed = new Set<string>();
      zone.routes.forEach((route, i) => {
        const service = t.services[route.service];
        if (!service || service.zone !== zoneName || routed.has(route.service)) return;
        routed.add(route.service);
        flow({ component: gateway }, to(route.service), `the ${zoneName} gateway routes to ${route.service}`, ['zones', zoneName, 'routes', i, 'service']);
      });
      if (zone.authority) flow({ component: gateway }, to(authority), `the ${zoneName} gateway reads its authority's keys and revocations`, ['zones', zoneName, 'authority']);
      // monitoring (seed 000): the admin listener (metrics, health, reload) stays on loopback unless the topology moves
      // it; then exactly the declared scrapers reach it
      const admin = parseListen(zone.gateway.admin.listen);
      if (typeof admin !== 'string' && !isLoopbackHost(admin.host)) {
        const at: TopologyPath = ['zones', zoneName, 'gateway', 'admin', 'listen'];
        if (admin.port === 0) problems.push({ at, message: `the ${zoneName} gateway's admin listener is off loopback on port 0: give it a fixed port, which the scrapers' rules name` });
        else if (t.monitor.scrapers.length === 0)
          problems.push({ at, message: `the ${zoneName} gateway's admin listener (metrics, health, reload) is off loopback, but monitor.scrapers names nobody who may reach it: list your Prometheus networks there, or keep it on 127.0.0.1` });
        t.monitor.scrapers.forEach((cidr, i) => flow({ cidr }, to(gateway, 'admin'), `Prometheus scrapes the ${zoneName} gateway's metrics`, ['monitor', 'scrapers', i]));
      }
      forEachStore(zone, (url, at) => {
        const endpoint = urlEndpoint(url, 6379);
        if (endpoint) flow({ component: gateway }, { outside: endpoint }, `the ${zoneName} gateway shares rate limits in Redis`, ['zones', zoneName, ...at]);
      });
    }
    if (zone.authority) {
      for (const o of outside)
        flow(o.source, to(authority), `clients of zone ${zoneName} sign in at its authority`, o.at.length ? o.at : ['zones', zoneName, 'authority', 'listen']);
      zone.authority.trustedZones.forEach((trusted, i) => {
        const other = typeof trusted === 'string' ? trusted : trusted.zone;
        if (t.zones[other]?.authority && other !== zoneName)
          flow({ component: authority }, to(`authority:${other}`), `the ${zoneName} authority checks ${other} tokens before an exchange`, ['zones', zoneName, 'authority', 'trustedZones', i]);
      });
      // federated sign-in: the authority discovers the upstream, redeems codes and reads its keys
      (zone.authority.federation ?? []).forEach((f, i) => {
        const at: TopologyPath = ['zones', zoneName, 'authority', 'federation', i];
        const why = `the ${zoneName} authority signs users in with ${f.name}`;
        const upstream = f.zone ?? Object.keys(t.zones).find((z) => t.zones[z].authority?.issuer !== undefined && sameIssuer(t.zones[z].authority!.issuer!, f.issuer!));
        if (upstream !== undefined) {
          if (t.zones[upstream]?.authority && upstream !== zoneName) flow({ component: authority }, to(`authority:${upstream}`), why, at);
          return;
        }
        const endpoint = urlEndpoint(f.issuer!, 443);
        if (endpoint) flow({ component: authority }, { outside: endpoint }, why, [...at, 'issuer']);
      });
      const storage = urlEndpoint(zone.authority.storage, 5432);
      if (storage) flow({ component: authority }, { outside: storage }, `the ${zoneName} authority keeps its state in PostgreSQL`, ['zones', zoneName, 'authority', 'storage']);
    }
  }

  for (const [name, service] of Object.entries(t.services)) {
    if (t.zones[service.zone]?.authority)
      flow({ component: name }, to(`authority:${service.zone}`), `${name} gets and checks tokens of its zone`, ['services', name, 'zone']);
    service.egress.forEach((entry, i) => {
      const at: TopologyPath = ['services', name, 'egress', i];
      const gatewayZone = /^gateway:(.+)$/.exec(entry)?.[1];
      if (gatewayZone !== undefined) {
        const zone = t.zones[gatewayZone];
        if (!zone?.gateway) return;
        flow({ component: name }, to(`gateway:${gatewayZone}`), `${name} calls zone ${gatewayZone} through its gateway`, at);
        if (zone.authority && gatewayZone !== service.zone)
          flow({ component: name }, to(`authority:${gatewayZone}`), `${name} exchanges tokens for zone ${gatewayZone}`, at);
        return;
      }
      const target = t.services[entry];
      if (target) {
        // both sides must agree, and the mesh never crosses a zone without a gateway
        if (target.zone === service.zone && target.allow.some((e) => e.caller === name))
          flow({ component: name }, to(entry), `${name} calls ${entry}`, at);
        return;
      }
      const endpoint = egressEndpoint(entry);
      if (endpoint) flow({ component: name }, { outside: endpoint }, `${name} calls ${entry} outside the topology`, at);
    });
  }

  // the vault: each service a key grants an operation to calls it; it keeps its keys in PostgreSQL when told to
  if (t.vault) {
    const granted = new Map<string, TopologyPath>();
    for (const [key, grants] of Object.entries(t.vault.keys))
      for (const op of ['encrypt', 'decrypt', 'rewrap', 'datakey', 'tokenize', 'detokenize'] as const)
        grants[op].forEach((service, i) => {
          if (t.services[service] && !granted.has(service)) granted.set(service, ['vault', 'keys', key, op, i]);
        });
    for (const [service, at] of granted) flow({ component: service }, to(VAULT), `${service} encrypts or tokenizes with the vault`, at);
    const storage = urlEndpoint(t.vault.storage, 5432);
    if (storage) flow({ component: VAULT }, { outside: storage }, 'the vault keeps its keys in PostgreSQL', ['vault', 'storage']);
  }

  // every workload proves its identity with a CA certificate, fetches its policy bundle and, on the same
  // connection, reports its status and its security events (monitoring: seed 000)
  for (const c of components.values()) {
    if (c.kind === 'ca') continue;
    flow({ component: c.id }, to(CA), `${c.id} renews its certificate`, c.at);
    if (c.kind !== 'control') flow({ component: c.id }, to(CONTROL), `${c.id} fetches its policy bundle and sends its security events`, c.at);
  }
  // log aggregation (seed 000): each machine's log shipper, whatever it runs
  t.monitor.logSinks.forEach((sink, i) => {
    const endpoint = egressEndpoint(sink)!;
    for (const c of components.values())
      flows.push({ from: { component: c.id }, to: { outside: endpoint }, why: `the host ships its logs to ${sink}`, at: ['monitor', 'logSinks', i], host: true });
  });
  return { components, flows, problems: [...problems, ...flows.flatMap(flowProblems)] };
}

/** Why a flow cannot become a firewall rule, if it cannot. */
function flowProblems(f: Flow): { at: TopologyPath; message: string }[] {
  if ('cidr' in f.from) {
    const problem = ingressCidrProblem(f.from.cidr);
    if (problem) return [{ at: f.at, message: problem }];
  }
  if ('outside' in f.to && isIP(f.to.outside.host) === 0)
    return [
      {
        at: f.at,
        message: `${f.to.outside.host} is a name: network rules match addresses, so an outside endpoint needs its IP address (a name would have to allow whatever it resolves to)`,
      },
    ];
  return [];
}

/** True when a CIDR has bits set past its prefix (10.0.0.1/8): which network was meant is ambiguous. */
export function cidrHasHostBits(cidr: string): boolean {
  const [address, bits] = cidr.split('/');
  const family = isIP(address) as 0 | 4 | 6;
  if (family === 0 || bits === undefined) return false;
  const bytes = addressBytes(address, family);
  for (let bit = Number(bits); bit < bytes.length * 8; bit++) if ((bytes[bit >> 3] >> (7 - (bit & 7))) & 1) return true;
  return false;
}
/** The admin listener's port when it is off loopback (scrapers reach it); absent on loopback or on port 0. */
function adminPort(listen: string): number | undefined {
  const parsed = parseListen(listen);
  return typeof parsed === 'string' || isLoopbackHost(parsed.host) || parsed.port === 0 ? undefined : parsed.port;
}

function bindOf(listen: string, at: TopologyPath): Component['bind'] {
  const parsed = parseListen(listen);
  return typeof parsed === 'string' ? undefined : { host: parsed.host, at };
}

/** 127.0.0.0/8, ::1 and localhost: reachable from the same machine only. */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function upstreamPort(upstream: string | undefined): number | undefined {
  if (upstream === undefined) return undefined;
  const url = new URL(upstream);
  return url.port === '' ? (url.protocol === 'https:' ? 443 : 80) : Number(url.port);
}

/** host:port of a URL (redis://, postgres://), or undefined for 'sqlite' and the like. */
function sameIssuer(a: string, b: string): boolean {
  return a.replace(/\/$/, '') === b.replace(/\/$/, '');
}

function urlEndpoint(value: string, defaultPort: number): { host: string; port: number } | undefined {
  if (!/^[a-z]+:\/\//.test(value)) return undefined;
  try {
    const url = new URL(value);
    if (url.hostname === '') return undefined;
    return { host: url.hostname.replace(/^\[|\]$/g, ''), port: url.port === '' ? defaultPort : Number(url.port) };
  } catch {
    return undefined;
  }
}

/** An egress entry host:port (IPv6 in brackets), or undefined for a service or gateway:<zone>. */
export function egressEndpoint(entry: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(entry);
  return m ? { host: m[1] ?? m[2], port: Number(m[3]) } : undefined;
}

/** Every Redis rate-limit store of a zone (its default and its routes'), with where it is declared. */
function forEachStore(zone: ZoneConfig, visit: (url: string, at: TopologyPath) => void): void {
  const zoneStore = zone.policies.rate_limit?.store;
  if (zoneStore?.type === 'redis') visit(zoneStore.url, ['policies', 'rate_limit', 'store', 'url']);
  zone.routes.forEach((route, i) => {
    const store = route.policies.rate_limit ? route.policies.rate_limit.store : undefined;
    if (store?.type === 'redis') visit(store.url, ['routes', i, 'policies', 'rate_limit', 'store', 'url']);
  });
}
