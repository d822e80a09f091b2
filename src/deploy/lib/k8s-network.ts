// NetworkPolicies of a namespace: default deny for ingress and egress, DNS to
// kube-dns (UDP and TCP), then one policy per pod allowing exactly its flows.
import type { INetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import type { INetworkPolicyPeer } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyPeer';
import type { INetworkPolicyIngressRule } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyIngressRule';
import type { INetworkPolicyEgressRule } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicyEgressRule';
import { selectorOf } from './k8s-workload.ts';

export function denyAll(namespace: string): INetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'default-deny', namespace },
    spec: { podSelector: {}, policyTypes: ['Ingress', 'Egress'] },
  };
}

export function allowDns(namespace: string): INetworkPolicy {
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: 'allow-dns', namespace },
    spec: {
      podSelector: {},
      policyTypes: ['Egress'],
      egress: [
        {
          to: [
            {
              namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': 'kube-system' } },
              podSelector: { matchLabels: { 'k8s-app': 'kube-dns' } },
            },
          ],
          ports: [
            { protocol: 'UDP', port: 53 },
            { protocol: 'TCP', port: 53 },
          ],
        },
      ],
    },
  };
}

/** A peer of a rule: a pod of a namespace, an address block, or (undefined) anyone. */
export type Peer = INetworkPolicyPeer | undefined;

export function podPeer(namespace: string, name: string): INetworkPolicyPeer {
  return { namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': namespace } }, podSelector: { matchLabels: selectorOf(name) } };
}

export interface PodRule {
  direction: 'ingress' | 'egress';
  peer: Peer;
  port: number;
}

/** The pod's own policy: one rule per peer and port, in the order the flows came (same input, same bytes). */
export function podPolicy(namespace: string, name: string, rules: PodRule[]): INetworkPolicy {
  const seen = new Set<string>();
  const unique = rules.filter((r) => {
    const key = JSON.stringify([r.direction, r.peer ?? null, r.port]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  const port = (r: PodRule) => [{ protocol: 'TCP' as const, port: r.port }];
  const ingress: INetworkPolicyIngressRule[] = unique
    .filter((r) => r.direction === 'ingress')
    .map((r) => (r.peer ? { from: [r.peer], ports: port(r) } : { ports: port(r) }));
  const egress: INetworkPolicyEgressRule[] = unique
    .filter((r) => r.direction === 'egress')
    .map((r) => (r.peer ? { to: [r.peer], ports: port(r) } : { ports: port(r) }));
  return {
    apiVersion: 'networking.k8s.io/v1',
    kind: 'NetworkPolicy',
    metadata: { name: `allow-${name}`, namespace },
    spec: {
      podSelector: { matchLabels: selectorOf(name) },
      policyTypes: ['Ingress', 'Egress'],
      ...(ingress.length > 0 ? { ingress } : {}),
      ...(egress.length > 0 ? { egress } : {}),
    },
  };
}
