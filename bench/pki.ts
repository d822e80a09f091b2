// CA benchmark: certificates issued per second, in process (CSR check + sign)
// and over HTTPS (/v1/renew with mTLS, new key each time, as workloads do).
//   sh scripts/node.sh bench/pki.ts [seconds, default 3]
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseTopology } from '../src/topology/load.ts';
import { createLogger } from '../src/shared/logger.ts';
import { initCa, openCa, issueCertificate, issueWorkloadIdentity, startCaServer, renewIdentity } from '../src/pki/index.ts';
import { newKeyAndCsr } from '../src/pki/lib/workload-key.ts';

const seconds = Number(process.argv[2] ?? 3);
const topology = parseTopology(`
version: 1
trustDomain: bench.local
zones: { z: {} }
services: { orders: { zone: z, upstream: 'http://127.0.0.1:1' } }
`);
const stateDir = mkdtempSync(path.join(tmpdir(), 'gh-pki-bench-'));
try {
  await initCa({ stateDir, topology, passphrase: 'benchmark passphrase!' });
  const ca = await openCa({ stateDir, topology });
  const spiffeId = 'spiffe://bench.local/zone/z/svc/orders';
  const csrs = await Promise.all(Array.from({ length: 200 }, () => newKeyAndCsr()));
  let n = 0;
  let end = performance.now() + seconds * 1000;
  let start = performance.now();
  while (performance.now() < end) await issueCertificate(ca, { csr: csrs[n++ % csrs.length].csrPem, spiffeId });
  const inProcess = n / ((performance.now() - start) / 1000);

  const server = await startCaServer({ topology, stateDir, logger: createLogger({ name: 'bench', level: 'error' }) });
  const current = await issueWorkloadIdentity(ca, spiffeId, { ttlSeconds: 86400 });
  n = 0;
  end = performance.now() + seconds * 1000;
  start = performance.now();
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (performance.now() < end) {
        await renewIdentity({ caUrl: server.url, trustDomain: 'bench.local', current });
        n++;
      }
    }),
  );
  const overHttps = n / ((performance.now() - start) / 1000);
  await server.close();
  console.log('\ncertificate issuance\n');
  console.log('| path | certificates/s |');
  console.log('|---|---:|');
  console.log(`| in process (CSR check + sign) | ${inProcess.toFixed(0)} |`);
  console.log(`| HTTPS /v1/renew, mTLS, new key per call (8 concurrent) | ${overHttps.toFixed(0)} |`);
} finally {
  rmSync(stateDir, { recursive: true, force: true });
}
