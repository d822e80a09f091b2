// `gatehouse export nftables --host H`: the firewall of one machine of a
// multi-host deployment. Default drop in and out; replies of accepted
// connections pass (conntrack); every other accept is a flow of the topology
// that starts or ends on this host, preceded by a comment naming it and the
// topology line it came from. Loading it replaces Gatehouse's table whole
// (one `nft -f` transaction), other tables are left alone.
import { isIP } from 'node:net';
import type { LoadedTopology } from '../topology/index.ts';
import { formatPath } from '../topology/config-error.ts';
import { deploymentFlows, isLoopbackHost, type ComponentId, type Flow } from './flows.ts';
import { placeComponents, type Placement } from './place-hosts.ts';
import { Issues, commentText, sourceLine } from './lib/issues.ts';

export const NFT_TABLE = 'gatehouse';

interface Rule {
  chain: 'input' | 'output';
  match: string;
  why: string[];
}

export function exportNftables(loaded: LoadedTopology, hostName: string): string {
  const t = loaded.topology;
  const issues = new Issues(loaded);
  const host = Object.hasOwn(t.hosts, hostName) ? t.hosts[hostName] : undefined;
  if (!host) {
    const names = Object.keys(t.hosts);
    throw issues.refuse(['hosts'], `no host named ${JSON.stringify(hostName)} (${names.length > 0 ? `hosts: ${names.join(', ')}` : 'the topology has no hosts: mapping'})`);
  }
  const model = deploymentFlows(t);
  for (const p of model.problems) issues.add(p.at, p.message);
  const placements = placeComponents(t, model, issues);
  issues.check();

  const self: Placement = { host: hostName, address: host.address, family: isIP(host.address) as 4 | 6, ports: { main: 0 } };
  const rules = new Map<string, Rule>();
  const rule = (chain: Rule['chain'], match: string, flow: Flow) => {
    const why = `${flow.why}: ${formatPath(flow.at)} (${sourceLine(loaded, flow.at)})`;
    const key = `${chain} ${match}`;
    const existing = rules.get(key);
    if (!existing) rules.set(key, { chain, match, why: [why] });
    else if (!existing.why.includes(why)) existing.why.push(why);
  };
  const placed = (id: string, flow: Flow, side: 'from' | 'to') => {
    const list = placements.get(id) ?? [];
    if (list.length === 0) issues.add(flow.at, `${side === 'from' ? 'a flow from' : 'a flow to'} ${id}, which no host runs: place it in a host's runs`);
    return list;
  };

  for (const flow of model.flows) {
    if ('component' in flow.to) {
      const listener = flow.to.listener;
      for (const target of placed(flow.to.component, flow, 'to')) {
        if (target.host !== hostName) continue;
        const bind = model.components.get(flow.to.component)?.bind;
        const local = 'component' in flow.from && (placements.get(flow.from.component) ?? []).every((p) => p.host === hostName);
        if (bind && listener !== 'admin' && isLoopbackHost(bind.host) && !local)
          issues.add(bind.at, `${flow.to.component} listens on ${bind.host}, which other machines cannot reach (${flow.why}): listen on 0.0.0.0 or ${self.address}`);
        const port = target.ports[listener];
        if (port === undefined) continue;
        const dest = `${family(self)} daddr ${self.address} tcp dport ${port} accept`;
        if ('anywhere' in flow.from) rule('input', dest, flow);
        else if ('cidr' in flow.from) {
          if (isIP(flow.from.cidr.split('/')[0]) === self.family) rule('input', `${family(self)} saddr ${flow.from.cidr} ${dest}`, flow);
        } else
          for (const source of placed(flow.from.component, flow, 'from'))
            if (source.family === self.family) rule('input', `${family(self)} saddr ${source.address} ${dest}`, flow);
      }
    }
    if (!('component' in flow.from) || !(placements.get(flow.from.component) ?? []).some((p) => p.host === hostName)) continue;
    if ('outside' in flow.to) {
      const { host: address, port } = flow.to.outside;
      const outsideFamily = isIP(address) as 4 | 6;
      if (host.loopback && isLoopbackHost(address)) continue; // the loopback interface is accepted whole
      rule('output', `${outsideFamily === 4 ? 'ip' : 'ip6'} daddr ${address} tcp dport ${port} accept`, flow);
      continue;
    }
    const listener = flow.to.listener;
    for (const target of placed(flow.to.component, flow, 'to')) {
      const port = target.ports[listener];
      if (port !== undefined && target.family === self.family)
        rule('output', `${family(target)} daddr ${target.address} tcp dport ${port} accept`, flow);
    }
  }
  issues.check();
  const runs = [...model.components.keys()].filter((id) => placements.get(id)?.some((p) => p.host === hostName));
  return render(loaded, hostName, self, host.loopback, runs, [...rules.values()]);
}

function family(p: { family: 4 | 6 }): 'ip' | 'ip6' {
  return p.family === 4 ? 'ip' : 'ip6';
}

/** `runs`: what the host's runs name, and what runs there by implication (the vault beside the CA). */
function render(loaded: LoadedTopology, hostName: string, self: Placement, loopback: boolean, runs: ComponentId[], rules: Rule[]): string {
  const chain = (name: Rule['chain']) => {
    const lines = [
      `\tchain ${name} {`,
      `\t\ttype filter hook ${name} priority filter; policy drop;`,
      '\t\tct state established,related accept',
      '\t\tct state invalid drop',
    ];
    if (loopback) lines.push(`\t\t# loopback (admin listeners, sidecars and their applications): hosts.${hostName}.loopback`, `\t\t${name === 'input' ? 'iif' : 'oif'} "lo" accept`);
    lines.push(
      '\t\t# IPv6 reaches no neighbour without neighbour discovery',
      `\t\ticmpv6 type { nd-neighbor-solicit, nd-neighbor-advert${name === 'input' ? ', nd-router-advert' : ', nd-router-solicit'} } accept`,
    );
    for (const r of rules.filter((x) => x.chain === name)) {
      for (const why of r.why) lines.push(`\t\t# ${commentText(why)}`);
      lines.push(`\t\t${r.match}`);
    }
    lines.push('\t}');
    return lines;
  };
  return [
    '#!/usr/sbin/nft -f',
    `# Gatehouse firewall of host ${hostName} (${self.address}), trust domain ${loaded.topology.trustDomain}, from ${commentText(sourceLine(loaded, ['hosts', hostName]))}.`,
    `# Runs: ${runs.join(', ') || 'nothing'}.`,
    '# Written by `gatehouse export nftables`: regenerate it from the topology, do not edit it.',
    '# Default drop in and out; each accept is a flow the topology declares.',
    `table inet ${NFT_TABLE}`,
    `delete table inet ${NFT_TABLE}`,
    `table inet ${NFT_TABLE} {`,
    ...chain('input'),
    ...chain('output'),
    '}',
    '',
  ].join('\n');
}
