// `gatehouse ca init`: the trust domain's root and one issuing intermediate per
// zone (plus `_control`, which only signs the CA server's own certificate).
// The root key and the issuers' keys are stored sealed under the vault's
// master key (lib/key-seal.ts); the root key is needed only here: once the
// intermediates exist, root-key.enc.json can be moved offline and `ca serve`
// keeps working. Running init again adds issuers for new zones (which needs
// the root key back), re-seals what an older version stored under a
// passphrase or in plain PEM, and changes nothing else.
import { existsSync, readFileSync } from 'node:fs';
import type { Topology } from '../topology/schema.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { x509, crypto, EC_ALG, generateKeyPair, importPrivateKeyDer, randomSerial, certPem } from './lib/x509.ts';
import type { Key } from './lib/x509.ts';
import { pkiPaths, issuerFiles, ensureDirs, writeAtomic, CONTROL_ISSUER } from './lib/files.ts';
import { caMasterKey, readRootKey, resealCaKeys, writeSealedIssuerKey, writeSealedRootKey, devPassphrase, type CaKeyOptions } from './lib/key-seal.ts';
import { GatehouseError } from '../shared/errors.ts';
import type { Kms } from '../vault/index.ts';

const DAY = 24 * 60 * 60 * 1000;

export interface InitCaOptions extends CaKeyOptions {
  stateDir: string;
  topology: Topology;
  /**
   * Passphrase of a root key an older version sealed under a passphrase: it is
   * re-sealed under the master key. Absent: the older version's dev file
   * pki/root-passphrase, if there. A new root never uses one.
   */
  passphrase?: string;
  clock?: Clock;
  /** Root validity in days (default 3650). */
  rootDays?: number;
  /** Intermediate validity in days (default 365); leaves never outlive it. */
  issuerDays?: number;
}

export interface InitCaResult {
  /** True when this call created the root. */
  createdRoot: boolean;
  /** Issuers (zones) created by this call. */
  createdIssuers: string[];
  /** The trust bundle (root certificate PEM) path. */
  bundleFile: string;
  /** Never set any more (a new root is sealed under the master key); kept for callers that print it. */
  devPassphraseFile?: string;
  /** What this call re-sealed under the master key (`root`, `issuer:<name>`). */
  resealed: string[];
}

export interface CaMeta {
  version: 1;
  trustDomain: string;
  createdAt: string;
}

export async function initCa(options: InitCaOptions): Promise<InitCaResult> {
  const clock = options.clock ?? systemClock;
  const td = options.topology.trustDomain;
  const paths = pkiPaths(options.stateDir);
  ensureDirs(paths);
  let createdRoot = false;
  const passphrase = options.passphrase;
  const kms = await caMasterKey(options.stateDir, paths, options);

  let rootCert: x509.X509Certificate;
  let rootKey: Key | undefined;
  if (!existsSync(paths.meta)) {
    const keys = await generateKeyPair();
    const now = clock.now();
    rootCert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: randomSerial(),
      name: [{ CN: [`Gatehouse root CA`] }, { O: [td] }],
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + (options.rootDays ?? 3650) * DAY),
      signingAlgorithm: EC_ALG,
      keys,
      extensions: [
        new x509.BasicConstraintsExtension(true, 1, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${td}` }], false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    const pkcs8 = new Uint8Array(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
    try {
      await writeSealedRootKey(kms, paths, pkcs8);
    } finally {
      pkcs8.fill(0);
    }
    writeAtomic(paths.bundle, certPem(rootCert), 0o644);
    const meta: CaMeta = { version: 1, trustDomain: td, createdAt: new Date(now).toISOString() };
    writeAtomic(paths.meta, JSON.stringify(meta, null, 2) + '\n', 0o644);
    rootKey = keys.privateKey;
    createdRoot = true;
  } else {
    const meta = JSON.parse(readFileSync(paths.meta, 'utf8')) as CaMeta;
    if (meta.trustDomain !== td)
      throw new GatehouseError(
        'bad_request',
        `the CA in ${paths.dir} is for trust domain ${meta.trustDomain}, the topology says ${td}`,
      );
    rootCert = new x509.X509Certificate(readFileSync(paths.bundle, 'utf8'));
  }
  const resealed = await resealCaKeys(kms, paths, passphrase);

  const wanted = [CONTROL_ISSUER, ...Object.keys(options.topology.zones)];
  const missing = wanted.filter((z) => !existsSync(issuerFiles(paths, z).cert) || !existsSync(issuerFiles(paths, z).key));
  if (missing.length > 0 && rootKey === undefined) rootKey = await unlockRoot(kms, paths, passphrase);

  const createdIssuers: string[] = [];
  for (const zone of missing) {
    const keys = await generateKeyPair();
    const now = clock.now();
    const notAfter = Math.min(now + (options.issuerDays ?? 365) * DAY, rootCert.notAfter.getTime());
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: randomSerial(),
      subject: [
        { CN: [zone === CONTROL_ISSUER ? 'Gatehouse control issuer' : `Gatehouse zone issuer ${zone}`] },
        { OU: [zone === CONTROL_ISSUER ? 'control' : `zone:${zone}`] },
        { O: [td] },
      ],
      issuer: rootCert.subjectName,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(notAfter),
      signingAlgorithm: EC_ALG,
      publicKey: keys.publicKey,
      signingKey: rootKey!,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        new x509.SubjectAlternativeNameExtension([{ type: 'url', value: `spiffe://${td}` }], false),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(rootCert, false),
      ],
    });
    const files = issuerFiles(paths, zone);
    await writeSealedIssuerKey(kms, paths, zone, keys.privateKey);
    writeAtomic(files.cert, certPem(cert), 0o644);
    if (zone !== CONTROL_ISSUER) createdIssuers.push(zone);
  }
  return { createdRoot, createdIssuers, bundleFile: paths.bundle, resealed };
}

async function unlockRoot(kms: Kms, paths: ReturnType<typeof pkiPaths>, passphrase: string | undefined): Promise<Key> {
  const der = await readRootKey(kms, paths, passphrase ?? devPassphrase(paths));
  if (der === undefined)
    throw new GatehouseError('ca_locked', 'new issuers need the root key, and root-key.enc.json is not in the state dir (offline?)');
  try {
    return await importPrivateKeyDer(der);
  } finally {
    der.fill(0);
  }
}
