// What a workload holds: its key, its certificate chain and the trust bundle.
export interface WorkloadIdentity {
  spiffeId: string;
  /** Leaf then intermediate, PEM: the `cert` of a TLS context. */
  certPem: string;
  /** PKCS#8 PEM private key: the `key` of a TLS context. Never log it. */
  keyPem: string;
  /** Root certificate(s), PEM: the `ca` of a TLS context. */
  bundlePem: string;
  serial: string;
  notBefore: Date;
  notAfter: Date;
}
