// The topology as an SVG drawn on the server (no script, no third-party
// library): one column per zone holding its gateway, authority and services;
// the allowed edges (routes from a gateway, `allow` edges between services,
// egress to another zone's gateway) in grey; edges denied in the last hour
// (edge_denied events: the caller's SPIFFE ID → the refusing workload) in red.
import type { Topology } from '../../topology/schema.ts';
import { parseSpiffeId } from '../../pki/index.ts';
import type { SecurityEvent } from '../../monitor/index.ts';
import { esc } from './html.ts';

interface Node {
  id: string;
  label: string;
  kind: 'gateway' | 'authority' | 'service';
  x: number;
  y: number;
}

const W = 170;
const H = 34;
const COL = 240;
const ROW = 58;

/** The node id of a SPIFFE ID (a service's name, gateway:<zone>), or undefined. */
function nodeOf(uri: string | undefined, trustDomain: string): string | undefined {
  const id = uri ? parseSpiffeId(uri, trustDomain) : null;
  if (!id) return undefined;
  if (id.kind === 'service') return id.service;
  if (id.kind === 'gateway') return `gateway:${id.zone}`;
  return undefined;
}

export function topologyGraph(t: Topology, denied: readonly SecurityEvent[]): { svg: string; edges: { from: string; to: string; denied: number }[] } {
  const nodes = new Map<string, Node>();
  const zones = Object.keys(t.zones);
  zones.forEach((zone, i) => {
    let row = 0;
    const x = 20 + i * COL;
    const z = t.zones[zone];
    if (z.gateway) nodes.set(`gateway:${zone}`, { id: `gateway:${zone}`, label: `gateway ${zone}`, kind: 'gateway', x, y: 60 + row++ * ROW });
    if (z.authority) nodes.set(`authority:${zone}`, { id: `authority:${zone}`, label: `authority ${zone}`, kind: 'authority', x, y: 60 + row++ * ROW });
    for (const [name, s] of Object.entries(t.services)) if (s.zone === zone) nodes.set(name, { id: name, label: name, kind: 'service', x, y: 60 + row++ * ROW });
  });
  const allowed = new Map<string, { from: string; to: string; denied: number }>();
  const edge = (from: string, to: string) => {
    if (nodes.has(from) && nodes.has(to) && from !== to) allowed.set(`${from}>${to}`, { from, to, denied: 0 });
  };
  for (const [zone, z] of Object.entries(t.zones)) for (const r of z.routes ?? []) edge(`gateway:${zone}`, r.service);
  for (const [name, s] of Object.entries(t.services)) {
    for (const a of s.allow ?? []) edge(a.caller === 'gateway' ? `gateway:${s.zone}` : a.caller, name);
    for (const e of s.egress ?? []) if (e.startsWith('gateway:')) edge(name, e);
  }
  const refused = new Map<string, { from: string; to: string; denied: number }>();
  for (const e of denied) {
    const from = nodeOf(e.peer, t.trustDomain);
    const to = nodeOf(e.pep, t.trustDomain);
    if (!from || !to || !nodes.has(from) || !nodes.has(to)) continue;
    const k = `${from}>${to}`;
    const r = refused.get(k) ?? { from, to, denied: 0 };
    r.denied++;
    refused.set(k, r);
  }
  const rows = Math.max(1, ...zones.map((zone) => [...nodes.values()].filter((n) => n.x === 20 + zones.indexOf(zone) * COL).length));
  const width = Math.max(COL, zones.length * COL) + 20;
  const height = 80 + rows * ROW;
  // across columns: side to side; within a column: out to the right and back in (never through a box)
  const line = (a: Node, b: Node, cls: string, title: string) => {
    let d: string;
    if (a.x === b.x) {
      const x = a.x + W;
      const y1 = a.y + H / 2 + (cls === 'denied' ? 6 : 0);
      const y2 = b.y + H / 2 + (cls === 'denied' ? 6 : 0);
      const out = 18 + Math.abs(y2 - y1) / 6;
      d = `M${x},${y1} C${x + out},${y1} ${x + out},${y2} ${x + 2},${y2}`;
    } else {
      const right = b.x > a.x;
      const x1 = right ? a.x + W : a.x;
      const x2 = right ? b.x - 2 : b.x + W + 2;
      const y1 = a.y + H / 2 + (cls === 'denied' ? 6 : 0);
      const y2 = b.y + H / 2 + (cls === 'denied' ? 6 : 0);
      const mid = (x1 + x2) / 2;
      d = `M${x1},${y1} C${mid},${y1} ${mid},${y2} ${x2},${y2}`;
    }
    return `<path class="${cls}" d="${d}" marker-end="url(#${cls === 'denied' ? 'arrow-red' : 'arrow'})"><title>${esc(title)}</title></path>`;
  };
  const parts: string[] = [];
  zones.forEach((zone, i) => {
    parts.push(`<rect class="zone" x="${10 + i * COL}" y="10" width="${COL - 20}" height="${height - 20}" rx="8"/><text class="zone-name" x="${20 + i * COL}" y="36">zone ${esc(zone)}</text>`);
  });
  for (const e of allowed.values()) parts.push(line(nodes.get(e.from)!, nodes.get(e.to)!, 'allowed', `${e.from} → ${e.to}: allowed`));
  for (const e of refused.values()) parts.push(line(nodes.get(e.from)!, nodes.get(e.to)!, 'denied', `${e.from} → ${e.to}: ${e.denied} denied in the last hour`));
  for (const n of nodes.values())
    parts.push(`<g class="node ${n.kind}"><rect x="${n.x}" y="${n.y}" width="${W}" height="${H}" rx="5"/><text x="${n.x + 10}" y="${n.y + 22}">${esc(n.label)}</text></g>`);
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-labelledby="graph-title" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}">
<title id="graph-title">Topology: ${zones.length} zones, ${nodes.size} components, ${allowed.size} allowed edges, ${refused.size} denied edges</title>
<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" class="arrow"/></marker>
<marker id="arrow-red" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" class="arrow-red"/></marker></defs>
${parts.join('\n')}
</svg>`;
  return { svg, edges: [...allowed.values(), ...refused.values()] };
}
