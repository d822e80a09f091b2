// Fixtures for pki and mesh tests: a topology, a CA in a temp state dir, a log
// capture, and a forge that signs deliberately wrong certificates, either with
// the real zone issuer (to prove the verifier, not only OpenSSL, refuses them)
// or with a rogue CA that copies our names.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { webcrypto } from 'node:crypto';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { parseTopology } from '../../src/topology/load.ts';
import type { Topology } from '../../src/topology/schema.ts';
import { createLogger, type Logger } from '../../src/shared/logger.ts';
import { initCa } from '../../src/pki/init-ca.ts';
import { openCa } from '../../src/pki/open-ca.ts';

x509.cryptoProvider.set(webcrypto as never);
export { x509 };

const ALG = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
type Key = webcrypto.CryptoKey;
type KeyPair = webcrypto.CryptoKeyPair;

export const TD = 'test.local';

export const TOPOLOGY_YAML = `
version: 1
trustDomain: ${TD}
zones:
  public:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 } }
  private:
    gateway: { listen: 127.0.0.1:0, admin: { listen: 127.0.0.1:0 } }
services:
  checkout:
    zone: public
    upstream: http://127.0.0.1:1
    allow:
      - caller: gateway
        methods: [GET, POST]
        paths: [{ path: /checkout, match: prefix }]
    egress: [orders, payments]
  orders:
    zone: private
    upstream: http://127.0.0.1:1
    allow:
      - caller: checkout
        methods: [GET, POST]
        paths: [{ path: /orders, match: prefix }]
      - caller: reporting
        methods: [GET]
        paths: [{ path: /orders/summary }]
    egress: []
  payments:
    zone: private
    upstream: http://127.0.0.1:1
  reporting:
    zone: private
    upstream: http://127.0.0.1:1
    egress: [orders, api.example.com:443]
`;

export function testTopology(yaml = TOPOLOGY_YAML): Topology {
  return parseTopology(yaml, 'test.yaml');
}

export function tempDir(prefix = 'gh-pki-'): { dir: string; cleanup(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function makeCaDir(topology = testTopology()): Promise<{ stateDir: string; topology: Topology; cleanup(): void }> {
  const t = tempDir();
  await initCa({ stateDir: t.dir, topology, passphrase: 'correct horse battery staple' });
  return { stateDir: t.dir, topology, cleanup: t.cleanup };
}

/** A logger whose JSON lines land in `lines`. */
export function captureLogger(name = 'test'): { logger: Logger; lines: string[]; text(): string } {
  const lines: string[] = [];
  const logger = createLogger({ name, level: 'debug', destination: { write: (s: string) => void lines.push(s) } });
  return { logger, lines, text: () => lines.join('') };
}

// ---- the forge -------------------------------------------------------------

export interface ForgeIssuer {
  cert: x509.X509Certificate;
  key: Key;
  /** PEM of the issuer (and its own issuer, if any) to append to a chain. */
  chainPem: string;
}

async function keyPair(): Promise<KeyPair> {
  return (await webcrypto.subtle.generateKey(ALG, true, ['sign', 'verify'])) as KeyPair;
}

async function keyPem(k: Key): Promise<string> {
  return x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', k), 'PRIVATE KEY') + '\n';
}

function serial(): string {
  return '4' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(15))).toString('hex');
}

/** The real issuer of `zone` from a CA state dir (its key is sealed under the master key: opened as the CA opens it). */
export async function realIssuer(stateDir: string, zone: string): Promise<ForgeIssuer> {
  const pem = readFileSync(path.join(stateDir, 'pki', 'issuers', `${zone}.pem`), 'utf8');
  const issuer = (await openCa({ stateDir })).issuers.get(zone);
  if (!issuer) throw new Error(`no issuer ${zone} in ${stateDir}`);
  return { cert: new x509.X509Certificate(pem), key: issuer.key, chainPem: pem };
}

/** An unrelated root and zone intermediate with exactly our names. */
export async function rogueCa(zone: string, td = TD): Promise<{ bundlePem: string; issuer: ForgeIssuer }> {
  const rootKeys = await keyPair();
  const now = Date.now();
  const root = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: [{ CN: ['Gatehouse root CA'] }, { O: [td] }],
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    signingAlgorithm: ALG,
    keys: rootKeys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 1, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  const interKeys = await keyPair();
  const inter = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: [{ CN: [`Gatehouse zone issuer ${zone}`] }, { OU: [`zone:${zone}`] }, { O: [td] }],
    issuer: root.subjectName,
    notBefore: new Date(now - 3600_000),
    notAfter: new Date(now + 86400_000),
    signingAlgorithm: ALG,
    publicKey: interKeys.publicKey,
    signingKey: rootKeys.privateKey,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    ],
  });
  return {
    bundlePem: root.toString('pem') + '\n',
    issuer: { cert: inter, key: interKeys.privateKey, chainPem: inter.toString('pem') + '\n' },
  };
}

export interface ForgeOptions {
  issuer: ForgeIssuer;
  /** SANs; default one URI. */
  sans: x509.JsonGeneralName[];
  subjectCn?: string;
  /** Basic constraints cA; default false. `null` omits the extension. */
  ca?: boolean | null;
  keyUsage?: number;
  notBefore?: Date;
  notAfter?: Date;
  /** Subject OU/O; default copies the issuer's (as the real CA does). */
  ou?: string;
}

/** A leaf (or, with ca: true, a "leaf" that can sign) plus its key; chainPem = leaf + issuer chain. */
export async function forge(o: ForgeOptions): Promise<{ certPem: string; keyPem: string; leafPem: string; issuer: ForgeIssuer }> {
  const keys = await keyPair();
  const now = Date.now();
  const extensions: x509.Extension[] = [];
  if (o.ca !== null) extensions.push(new x509.BasicConstraintsExtension(o.ca ?? false, undefined, true));
  extensions.push(new x509.KeyUsagesExtension(o.keyUsage ?? x509.KeyUsageFlags.digitalSignature, true));
  extensions.push(new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]));
  if (o.sans.length > 0) extensions.push(new x509.SubjectAlternativeNameExtension(o.sans));
  extensions.push(await x509.SubjectKeyIdentifierExtension.create(keys.publicKey));
  extensions.push(await x509.AuthorityKeyIdentifierExtension.create(o.issuer.cert));
  const issuerOu = o.issuer.cert.subjectName.toJSON().flatMap((r) => r.OU ?? []);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: [{ CN: [o.subjectCn ?? 'forged'] }, { OU: [o.ou ?? issuerOu[0] ?? 'x'] }, { O: [TD] }],
    issuer: o.issuer.cert.subjectName,
    notBefore: o.notBefore ?? new Date(now - 60_000),
    notAfter: o.notAfter ?? new Date(now + 3600_000),
    signingAlgorithm: ALG,
    publicKey: keys.publicKey,
    signingKey: o.issuer.key,
    extensions,
  });
  const leafPem = cert.toString('pem') + '\n';
  return {
    certPem: leafPem + o.issuer.chainPem,
    keyPem: await keyPem(keys.privateKey),
    leafPem,
    issuer: { cert, key: keys.privateKey, chainPem: leafPem + o.issuer.chainPem },
  };
}

export const uri = (value: string): x509.JsonGeneralName => ({ type: 'url', value });
export const dns = (value: string): x509.JsonGeneralName => ({ type: 'dns', value });
