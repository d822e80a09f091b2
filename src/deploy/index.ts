// The deploy component's door: exports of a topology for the machines it runs
// on (an nftables ruleset per host, Kubernetes manifests), and the flow model
// both are made from.
export { exportNftables, NFT_TABLE } from './export-nftables.ts';
export { exportK8s, k8sPrerequisites, isImageReference, DEFAULT_IMAGE, DEFAULT_K8S_ISSUER, type K8sExportOptions } from './export-k8s.ts';
export type { Prerequisite, PrerequisiteKey } from './lib/k8s-prerequisites.ts';
export { deploymentFlows, cidrHasHostBits, egressEndpoint, type DeploymentModel, type Flow, type Component } from './flows.ts';
