import type { Command } from 'commander';
import { CONFIG_HELP, defaultConfigPath } from '../config-path.ts';

const STATE = '.gatehouse';

interface Common {
  config: string;
  stateDir: string;
}

function common(cmd: Command): Command {
  return cmd
    .option('--config <file>', CONFIG_HELP, defaultConfigPath())
    .option('--state-dir <dir>', 'state directory (the CA lives in <dir>/pki)', STATE);
}

function seconds(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`expected a whole number of seconds, got ${JSON.stringify(value)}`);
  return n;
}

export function register(program: Command): void {
  const ca = program.command('ca').description('certificate authority of the trust domain (workload identities)');

  common(ca.command('init'))
    .description('create the root and one issuing intermediate per zone, their keys sealed under the master key (GATEHOUSE_MASTER_KEY, <state-dir>/vault/master.key or GATEHOUSE_KMS=transit)')
    .option('--passphrase-file <file>', 'file holding the passphrase of a root key an older version sealed under one (or set GATEHOUSE_CA_PASSPHRASE): it is re-sealed under the master key')
    .action(async (o: Common & { passphraseFile?: string }) => {
      const { readFileSync } = await import('node:fs');
      const { loadTopology } = await import('../../topology/load.ts');
      const { initCa } = await import('../../pki/index.ts');
      const { topology } = loadTopology(o.config);
      const passphrase = o.passphraseFile ? readFileSync(o.passphraseFile, 'utf8').trim() : process.env.GATEHOUSE_CA_PASSPHRASE;
      const r = await initCa({ stateDir: o.stateDir, topology, passphrase });
      process.stdout.write(
        `${r.createdRoot ? 'created' : 'found'} the root of ${topology.trustDomain}; ` +
          `new zone issuers: ${r.createdIssuers.join(', ') || 'none'}\ntrust bundle: ${r.bundleFile}\n`,
      );
      if (r.resealed.length > 0) process.stderr.write(`gatehouse ca: re-sealed under the master key: ${r.resealed.join(', ')}\n`);
      if (r.devPassphraseFile)
        process.stderr.write(
          `gatehouse ca: dev mode: the root key passphrase is in ${r.devPassphraseFile}; move it (and root-key.enc.json) offline for real use\n`,
        );
    });

  common(ca.command('serve'))
    .description('issue workload certificates over HTTPS (join-token or Kubernetes service-account-token bootstrap, mTLS renewal)')
    .option('--listen <host:port>', 'HTTPS listener', '127.0.0.1:0')
    .option('--admin-listen <host:port>', 'loopback listener for /metrics and /healthz; absent: none')
    .option(
      '--k8s-attestation <file>',
      "also bootstrap pods by their projected service-account token: the cluster issuer, audience, its keys and the workload of each service account (gatehouse export k8s writes it); absent: join tokens only",
    )
    .option('--control <url>', "send refusals to this control plane as security events (its bundles URL or origin; mTLS with the CA's own certificate); absent: logged only")
    .action(async (o: Common & { listen: string; adminListen?: string; k8sAttestation?: string; control?: string }) => {
      const { loadTopology } = await import('../../topology/load.ts');
      const { startCaServer, createK8sAttestor, loadK8sAttestationConfig } = await import('../../pki/index.ts');
      const { announceReady, closeOnSignals } = await import('../ready.ts');
      const { topology } = loadTopology(o.config);
      const k8sAttestor = o.k8sAttestation === undefined ? undefined : await createK8sAttestor(loadK8sAttestationConfig(o.k8sAttestation, topology));
      // the shipper needs the server's certificate, the server needs a sink: events emitted before it exists are none (nothing is served yet)
      let shipper: import('../../control/index.ts').EventShipper | undefined;
      const server = await startCaServer({ topology, stateDir: o.stateDir, listen: o.listen, adminListen: o.adminListen, k8sAttestor, events: { emit: (e) => shipper?.emit(e) } });
      if (o.control !== undefined) {
        const { createEventShipper } = await import('../../control/index.ts');
        shipper = createEventShipper({ url: new URL(o.control).origin, identity: server.identity, trustDomain: topology.trustDomain, caBundle: server.bundlePem });
      }
      announceReady({ component: 'ca', endpoints: { ca: server.url, ...(server.adminUrl ? { admin: server.adminUrl } : {}) } });
      closeOnSignals(async () => {
        await server.close();
        await shipper?.close();
      });
    });

  common(ca.command('token'))
    .description('print a one-time join token bound to a service (short-lived)')
    .requiredOption('--service <name>', 'the service the token bootstraps')
    .option('--ttl <seconds>', 'validity (default 600, at most 3600)', seconds)
    .action(async (o: Common & { service: string; ttl?: number }) => {
      const { loadTopology } = await import('../../topology/load.ts');
      const { createJoinToken } = await import('../../pki/index.ts');
      const { topology } = loadTopology(o.config);
      const t = createJoinToken({ stateDir: o.stateDir, topology, service: o.service, ttlSeconds: o.ttl });
      process.stdout.write(t.token + '\n');
      process.stderr.write(`gatehouse ca: join token for ${t.spiffeId}, single use, expires ${t.expiresAt.toISOString()}\n`);
    });

  common(ca.command('issue'))
    .description('write a fresh key and certificate for a service (or a zone gateway) straight from the CA')
    .option('--service <name>', 'the service to certify')
    .option('--gateway <zone>', 'certify the gateway of this zone instead')
    .requiredOption('--out <dir>', 'folder for cert.pem, key.pem (0600) and bundle.pem')
    .option('--ttl <seconds>', 'lifetime (default 3600, at most 86400)', seconds)
    .action(async (o: Common & { service?: string; gateway?: string; out: string; ttl?: number }) => {
      const { mkdirSync, writeFileSync, renameSync } = await import('node:fs');
      const path = await import('node:path');
      const { loadTopology } = await import('../../topology/load.ts');
      const { issueWorkloadIdentity, serviceSpiffeId, gatewaySpiffeId } = await import('../../pki/index.ts');
      const { topology } = loadTopology(o.config);
      if ((o.service === undefined) === (o.gateway === undefined)) throw new Error('give exactly one of --service or --gateway');
      let spiffeId: string;
      if (o.service !== undefined) {
        const svc = topology.services[o.service];
        if (!svc) throw new Error(`the topology has no service ${JSON.stringify(o.service)}`);
        spiffeId = serviceSpiffeId(topology.trustDomain, svc.zone, o.service);
      } else {
        if (!topology.zones[o.gateway!]?.gateway) throw new Error(`zone ${JSON.stringify(o.gateway)} has no gateway`);
        spiffeId = gatewaySpiffeId(topology.trustDomain, o.gateway!);
      }
      const id = await issueWorkloadIdentity(o.stateDir, spiffeId, { topology, ttlSeconds: o.ttl });
      mkdirSync(o.out, { recursive: true, mode: 0o700 });
      const put = (name: string, data: string, mode: number) => {
        const file = path.join(o.out, name);
        writeFileSync(`${file}.tmp`, data, { mode });
        renameSync(`${file}.tmp`, file);
      };
      put('key.pem', id.keyPem, 0o600);
      put('cert.pem', id.certPem, 0o644);
      put('bundle.pem', id.bundlePem, 0o644);
      process.stdout.write(`${id.spiffeId} serial ${id.serial} valid until ${id.notAfter.toISOString()} -> ${o.out}\n`);
    });

  common(ca.command('revoke'))
    .description('revoke a certificate by serial, and every certificate renewed from it; refused by the CA at once and by every peer within the refresh bound')
    .argument('<serial>', 'serial number (hex, colons allowed)')
    .option('--reason <text>', 'why (kept in the revocation record)')
    .action(async (serial: string, o: Common & { reason?: string }) => {
      const { revokeCertificate, REVOCATION_REFRESH_SECONDS } = await import('../../pki/index.ts');
      const r = revokeCertificate({ stateDir: o.stateDir, serial, reason: o.reason });
      const also = r.descendants.length ? ` and ${r.descendants.length} certificate(s) renewed from it (${r.descendants.join(', ')})` : '';
      process.stdout.write(
        `${r.added ? 'revoked' : 'already revoked'} ${r.serial}${also}; peers refuse it within ${REVOCATION_REFRESH_SECONDS} s\n`,
      );
    });
}
