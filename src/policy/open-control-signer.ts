// The control plane's signing identity: an Ed25519 key (0600 in
// <stateDir>/control/signing/) certified by the trust domain's CA as
// spiffe://<td>/control under the `_control` issuer. Re-issued with a fresh key
// when absent or within `renewBeforeMs` of its end. The same certificate
// serves the control plane's TLS, so a PEP that checks the server's name
// checks the bundle signer too.
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { webcrypto } from 'node:crypto';
import path from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { openCa, issueCertificate, controlSpiffeId } from '../pki/index.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import type { BundleSigner } from './sign-bundle.ts';

x509.cryptoProvider.set(webcrypto as never);

export interface ControlSigner extends BundleSigner {
  key: KeyObject;
  spiffeId: string;
  /** Certificate then issuer, PEM (TLS `cert`). */
  chainPem: string;
  /** PKCS#8 PEM (TLS `key`). Never log it. */
  keyPem: string;
  /** The trust bundle (root PEM). */
  bundlePem: string;
  notAfter: number;
}

export interface OpenControlSignerOptions {
  stateDir: string;
  clock?: Clock;
  /** Re-issue when less than this is left (default 6 h). */
  renewBeforeMs?: number;
  /** Lifetime of a new certificate (default and CA maximum 86400 s). */
  ttlSeconds?: number;
}

export async function openControlSigner(options: OpenControlSignerOptions): Promise<ControlSigner> {
  const clock = options.clock ?? systemClock;
  const dir = path.resolve(options.stateDir, 'control', 'signing');
  const keyFile = path.join(dir, 'key.pem');
  const certFile = path.join(dir, 'cert.pem');
  const ca = await openCa({ stateDir: options.stateDir, clock });
  const spiffeId = controlSpiffeId(ca.trustDomain);
  let chainPem = existsSync(certFile) ? readFileSync(certFile, 'utf8') : '';
  let keyPem = existsSync(keyFile) ? readFileSync(keyFile, 'utf8') : '';
  const usable = () => {
    try {
      const c = new X509Certificate(chainPem);
      return c.subjectAltName === `URI:${spiffeId}` && Date.parse(c.validTo) - clock.now() > (options.renewBeforeMs ?? 6 * 3600_000) && c.checkPrivateKey(createPrivateKey(keyPem));
    } catch {
      return false;
    }
  };
  if (!usable()) {
    const keys = (await webcrypto.subtle.generateKey({ name: 'Ed25519' }, true, ['sign', 'verify'])) as unknown as webcrypto.CryptoKeyPair;
    const csr = await x509.Pkcs10CertificateRequestGenerator.create({ keys, signingAlgorithm: { name: 'Ed25519' } });
    const issued = await issueCertificate(ca, { csr: csr.toString('pem') + '\n', spiffeId, ttlSeconds: options.ttlSeconds ?? 86400 });
    keyPem = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY') + '\n';
    chainPem = issued.chainPem;
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    writeAtomic(keyFile, keyPem, 0o600);
    writeAtomic(certFile, chainPem, 0o644);
  }
  const certs = (chainPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map((p) => new X509Certificate(p));
  return {
    key: createPrivateKey(keyPem),
    x5c: certs.slice(0, 2).map((c) => c.raw.toString('base64')),
    spiffeId,
    chainPem,
    keyPem,
    bundlePem: ca.bundlePem,
    notAfter: Date.parse(certs[0].validTo),
  };
}

function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  writeFileSync(tmp, data, { mode });
  renameSync(tmp, file);
}
