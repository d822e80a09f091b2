// Where each component runs in a multi-host deployment: the topology's
// `hosts:` mapping, checked whole (unknown components, a port the topology
// contradicts, two components on one port of one host, two hosts on one address).
import { isIP } from 'node:net';
import type { Topology } from '../topology/index.ts';
import { isLoopbackHost, CA, VAULT, type ComponentId, type DeploymentModel } from './flows.ts';
import type { Issues } from './lib/issues.ts';

export interface Placement {
  host: string;
  address: string;
  family: 4 | 6;
  /** TCP ports of its listeners on that host (admin: a gateway's admin listener off loopback). */
  ports: { main: number; redirect?: number; admin?: number };
}

/** Every component's placements (a stateless one, such as a gateway, may run on several hosts). */
export function placeComponents(t: Topology, model: DeploymentModel, issues: Issues): Map<ComponentId, Placement[]> {
  const placements = new Map<ComponentId, Placement[]>();
  const addresses = new Map<string, string>();
  for (const [host, config] of Object.entries(t.hosts)) {
    const owner = addresses.get(config.address);
    if (owner) issues.add(['hosts', host, 'address'], `address ${config.address} is already host ${owner}'s`);
    addresses.set(config.address, host);
    const taken = new Map<number, ComponentId>();
    const claim = (port: number, id: ComponentId) => {
      const other = taken.get(port);
      if (other !== undefined) issues.add(['hosts', host, 'runs', id], `port ${port} of host ${host} is already ${other}'s`);
      taken.set(port, id);
    };
    for (const [id, given] of Object.entries(config.runs)) {
      const at = ['hosts', host, 'runs', id];
      const component = model.components.get(id);
      if (!component) {
        issues.add(at, `unknown component ${JSON.stringify(id)} (${knownComponents(model)})`);
        continue;
      }
      const fixed = component.ports.main;
      if (given !== null && fixed !== undefined && given !== fixed)
        issues.add(at, `${id} listens on port ${fixed} in the topology (${component.at.join('.')}); write null or ${fixed}`);
      const main = given ?? fixed;
      if (main === undefined) {
        issues.add(at, `${id} has no fixed port in the topology: give the port it listens on here`);
        continue;
      }
      // a service the gateway reaches at its upstream address must run at that address
      const bind = component.bind;
      if (component.kind === 'service' && bind && isIP(bind.host) !== 0 && !isLoopbackHost(bind.host) && !/^(0\.0\.0\.0|[0:]+)$/.test(bind.host) && bind.host !== config.address)
        issues.add(at, `${id} is reached at ${bind.host} (${bind.at.join('.')}), but host ${host} is ${config.address}`);
      claim(main, id);
      if (component.ports.redirect !== undefined) claim(component.ports.redirect, id);
      if (component.ports.admin !== undefined) claim(component.ports.admin, id);
      const list = placements.get(id) ?? [];
      list.push({ host, address: config.address, family: isIP(config.address) as 4 | 6, ports: { main, redirect: component.ports.redirect, admin: component.ports.admin } });
      placements.set(id, list);
    }
  }
  placeVault(model, placements, issues);
  return placements;
}

/**
 * The vault issues its certificate from the CA's keys and reads the CA's revocations in the
 * CA's state dir: it runs where the CA runs, on the port its `listen` gives.
 */
function placeVault(model: DeploymentModel, placements: Map<ComponentId, Placement[]>, issues: Issues): void {
  const vault = model.components.get(VAULT);
  const ca = placements.get(CA);
  if (!vault || !ca) return;
  if (ca.length !== 1) {
    issues.add(vault.at, `the vault shares the CA's state dir, so it runs on the CA's host; the CA runs on ${ca.length} hosts`);
    return;
  }
  const port = vault.ports.main;
  if (port === undefined) {
    issues.add([...vault.at, 'listen'], `the vault runs on host ${ca[0].host} beside the CA: give vault.listen a fixed port, which the firewall rules name`);
    return;
  }
  const clash = [...placements].find(([, list]) => list.some((p) => p.host === ca[0].host && [p.ports.main, p.ports.redirect, p.ports.admin].includes(port)));
  if (clash) {
    issues.add([...vault.at, 'listen'], `the vault runs on host ${ca[0].host} beside the CA, where port ${port} is already ${clash[0]}'s`);
    return;
  }
  placements.set(VAULT, [{ ...ca[0], ports: { main: port } }]);
}

function knownComponents(model: DeploymentModel): string {
  return `components: ${[...model.components.keys()].join(', ')}`;
}
