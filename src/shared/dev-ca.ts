// The local development CA: created once in the state dir and used to issue
// server certificates for the gateways and authorities `gatehouse up` runs.
// Its certificate is the `caBundle` of endpoints.json. Never used for workload
// identity (that is the pki component's trust-domain CA).
import { webcrypto } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync, existsSync, renameSync, linkSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';

const crypto = webcrypto;
x509.cryptoProvider.set(crypto as never);

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY = 24 * 60 * 60 * 1000;

export interface PemPair {
  cert: string;
  key: string;
}

export interface DevCa {
  /** Path of the CA certificate PEM (the caBundle). */
  caFile: string;
  caPem: string;
  /** Issue a server certificate for these DNS names / IP addresses, valid `days`. */
  issueServer(names: readonly string[], days?: number): Promise<PemPair>;
}

function pemKey(der: ArrayBuffer): string {
  return x509.PemConverter.encode(der, 'PRIVATE KEY') + '\n';
}


export async function openDevCa(stateDir: string, trustDomain = 'gatehouse.local'): Promise<DevCa> {
  const dir = path.join(stateDir, 'tls');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caFile = path.join(dir, 'dev-ca.pem');
  // key and certificate live together in one file created with link(): when
  // several processes start at once exactly one CA wins and all use it
  const bundleFile = path.join(dir, 'dev-ca.key');
  if (!existsSync(bundleFile)) {
    const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: `CN=Gatehouse dev CA (${trustDomain}), O=Gatehouse development`,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 365 * DAY),
      signingAlgorithm: ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const tmp = `${bundleFile}.${process.pid}.${Date.now()}.tmp`;
    writeFileSync(tmp, pemKey(await crypto.subtle.exportKey('pkcs8', keys.privateKey)) + cert.toString('pem') + '\n', { mode: 0o600 });
    try {
      linkSync(tmp, bundleFile);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    } finally {
      unlinkSync(tmp);
    }
  }
  const bundle = readFileSync(bundleFile, 'utf8');
  const caPem = x509.PemConverter.encode(x509.PemConverter.decodeFirst(bundle.slice(bundle.indexOf('-----BEGIN CERTIFICATE'))), 'CERTIFICATE') + '\n';
  if (!existsSync(caFile) || readFileSync(caFile, 'utf8') !== caPem) {
    const tmp = `${caFile}.${process.pid}.tmp`;
    writeFileSync(tmp, caPem, { mode: 0o644 });
    renameSync(tmp, caFile);
  }
  const caCert = new x509.X509Certificate(caPem);
  const caKey = await crypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(bundle), ALG, false, ['sign']);

  return {
    caFile,
    caPem,
    async issueServer(names, days = 30) {
      const keys = (await crypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
      const now = Date.now();
      const sans = names.map((n) =>
        /^[\d.]+$/.test(n) || n.includes(':') ? { type: 'ip' as const, value: n } : { type: 'dns' as const, value: n },
      );
      const cert = await x509.X509CertificateGenerator.create({
        serialNumber: randomSerial(),
        subject: `CN=${names[0] ?? 'localhost'}`,
        issuer: caCert.subject,
        notBefore: new Date(now - 60_000),
        notAfter: new Date(now + days * DAY),
        signingAlgorithm: ALG,
        publicKey: keys.publicKey,
        signingKey: caKey,
        extensions: [
          new x509.BasicConstraintsExtension(false, undefined, true),
          new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
          new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
          new x509.SubjectAlternativeNameExtension(sans, false),
          await x509.AuthorityKeyIdentifierExtension.create(caCert, false),
        ],
      });
      return {
        cert: cert.toString('pem') + '\n' + caPem,
        key: pemKey(await crypto.subtle.exportKey('pkcs8', keys.privateKey)),
      };
    },
  };
}

function randomSerial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  bytes[0] &= 0x7f; // positive
  return Buffer.from(bytes).toString('hex');
}
