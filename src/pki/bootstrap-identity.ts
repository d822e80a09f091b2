// The workload side of the CA: first identity from a one-time join token (or a
// Kubernetes projected service-account token), then renewals authenticated by
// the current certificate. The key is generated here and never sent anywhere.
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { newKeyAndCsr, certMatchesKey } from './lib/workload-key.ts';
import { caRequest, CaRequestError } from './lib/ca-client.ts';
import { normalizeSerial } from './lib/x509.ts';
import { parseSpiffeId } from './spiffe-id.ts';
import type { WorkloadIdentity } from './workload-identity.ts';

export interface BootstrapIdentityOptions {
  caUrl: string;
  /**
   * The one-time token from `gatehouse ca token --service S` (or `--service gateway:Z`), or
   * `file:<path>`: the token is read from that file at each bootstrap (a Kubernetes projected
   * service-account token, which the kubelet rewrites before it expires). Never logged.
   */
  joinToken: string;
  /** The service, or `gateway:<zone>` (`authority:<zone>`: with a service-account token only). */
  service: string;
  trustDomain: string;
  /** The trust bundle (root PEM), obtained out of band (e.g. <stateDir>/pki/bundle.pem). */
  bundlePem: string;
  ttlSeconds?: number;
  timeoutMs?: number;
}

export async function bootstrapIdentity(options: BootstrapIdentityOptions): Promise<WorkloadIdentity> {
  const { keyPem, csrPem } = await newKeyAndCsr();
  const { json } = await caRequest(
    'POST',
    '/v1/bootstrap',
    { service: options.service, csr: csrPem, ...(options.ttlSeconds ? { ttlSeconds: options.ttlSeconds } : {}) },
    { ...options, headers: { authorization: `Bearer ${tokenOf(options.joinToken)}` } },
  );
  const identity = toIdentity(json, keyPem, options.trustDomain, options.bundlePem);
  const id = parseSpiffeId(identity.spiffeId, options.trustDomain);
  const zoneOf = /^(gateway|authority):(.+)$/.exec(options.service);
  const expected = zoneOf ? (id?.kind === 'gateway' || id?.kind === 'authority') && id.kind === zoneOf[1] && id.zone === zoneOf[2] : id?.kind === 'service' && id.service === options.service;
  if (!id || !expected)
    throw new CaRequestError(0, 'bad_answer', 'the CA issued a certificate for another identity');
  return identity;
}

/** `file:` names the file the token is in (GATEHOUSE_JOIN_TOKEN=file:/var/run/secrets/…/token in a pod). */
export const TOKEN_FILE_PREFIX = 'file:';
const MAX_TOKEN_FILE_BYTES = 16 * 1024;

function tokenOf(joinToken: string): string {
  if (!joinToken.startsWith(TOKEN_FILE_PREFIX)) return joinToken;
  const file = joinToken.slice(TOKEN_FILE_PREFIX.length);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`cannot read the token file ${file}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const token = text.trim();
  if (token.length === 0 || token.length > MAX_TOKEN_FILE_BYTES || /\s/.test(token))
    throw new Error(`the token file ${file} does not hold one token`);
  return token;
}

export interface RenewIdentityOptions {
  caUrl: string;
  trustDomain: string;
  current: WorkloadIdentity;
  ttlSeconds?: number;
  timeoutMs?: number;
}

/** A new key and certificate for the same identity, authenticated by the current one. */
export async function renewIdentity(options: RenewIdentityOptions): Promise<WorkloadIdentity> {
  const { keyPem, csrPem } = await newKeyAndCsr();
  const { json } = await caRequest(
    'POST',
    '/v1/renew',
    { csr: csrPem, ...(options.ttlSeconds ? { ttlSeconds: options.ttlSeconds } : {}) },
    { ...options, bundlePem: options.current.bundlePem, client: options.current },
  );
  const identity = toIdentity(json, keyPem, options.trustDomain, options.current.bundlePem);
  if (identity.spiffeId !== options.current.spiffeId)
    throw new CaRequestError(0, 'bad_answer', 'the CA renewed a certificate for another identity');
  return identity;
}

function toIdentity(json: unknown, keyPem: string, trustDomain: string, bundlePem: string): WorkloadIdentity {
  const a = (json ?? {}) as Record<string, unknown>;
  if (typeof a.certificate !== 'string' || typeof a.spiffeId !== 'string')
    throw new CaRequestError(0, 'bad_answer', 'the CA answer has no certificate');
  if (!certMatchesKey(a.certificate, keyPem)) throw new CaRequestError(0, 'bad_answer', 'the certificate is not for our key');
  const leaf = new X509Certificate(a.certificate);
  const uri = /URI:([^,\s]+)/.exec(leaf.subjectAltName ?? '')?.[1];
  if (uri !== a.spiffeId || !parseSpiffeId(uri, trustDomain))
    throw new CaRequestError(0, 'bad_answer', 'the certificate does not carry the announced identity');
  return {
    spiffeId: a.spiffeId,
    certPem: a.certificate,
    keyPem,
    bundlePem,
    serial: normalizeSerial(leaf.serialNumber) ?? leaf.serialNumber,
    notBefore: new Date(leaf.validFrom),
    notAfter: new Date(leaf.validTo),
  };
}

/** The revocation list as the CA publishes it. */
export async function fetchRevocations(options: { caUrl: string; trustDomain: string; bundlePem: string; timeoutMs?: number }): Promise<{
  serials: string[];
  refreshSeconds: number;
}> {
  const { json } = await caRequest('GET', '/v1/revocations', undefined, options);
  const a = (json ?? {}) as { serials?: unknown; refreshSeconds?: unknown };
  if (!Array.isArray(a.serials) || !a.serials.every((s) => typeof s === 'string'))
    throw new CaRequestError(0, 'bad_answer', 'the revocation list is malformed');
  const serials = a.serials.map((s) => normalizeSerial(s as string)).filter((s): s is string => s !== null);
  return { serials, refreshSeconds: typeof a.refreshSeconds === 'number' ? a.refreshSeconds : 10 };
}
