// The connection a PEP keeps to the control plane: mTLS with its workload
// certificate, the trust domain's roots, and the server's identity checked
// (spiffe://<td>/control) unless it is a plain web server of exported files.
// Rebuilt when the workload certificate was renewed.
import https from 'node:https';
import { controlSpiffeId } from '../../pki/index.ts';

export interface PepIdentity {
  spiffeId: string;
  certPem: string;
  keyPem: string;
}

export function createControlAgent(o: {
  identity: () => PepIdentity;
  caBundle: string;
  trustDomain: string;
  /** false: any server certificate the roots sign (exported files on a web server). Default true. */
  controlServer?: boolean;
  maxSockets?: number;
}): { agent(): https.Agent; destroy(): void } {
  let agent: https.Agent | undefined;
  let cert: string | undefined;
  return {
    agent() {
      const id = o.identity();
      if (agent && cert === id.certPem) return agent;
      agent?.destroy();
      cert = id.certPem;
      agent = new https.Agent({
        keepAlive: true,
        maxSockets: o.maxSockets ?? 1,
        cert: id.certPem,
        key: id.keyPem,
        ca: o.caBundle,
        checkServerIdentity: (_host, peer) => {
          if (o.controlServer === false) return undefined;
          const expected = `URI:${controlSpiffeId(o.trustDomain)}`;
          return peer.subjectaltname === expected ? undefined : new Error(`the server is not ${expected}`);
        },
      });
      return agent;
    },
    destroy: () => agent?.destroy(),
  };
}
