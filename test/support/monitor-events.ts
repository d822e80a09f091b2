// Security events sent the way an enforcement point sends them: a batch over
// mTLS with the PEP's own workload certificate (issued by the test's CA), or
// as a local component (a zone authority) to the control plane's admin listener.
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { issueWorkloadIdentity } from '../../src/pki/index.ts';
import { tempDir } from './gateway-fixture.ts';

type Fields = Record<string, unknown>;
const batch = (events: Fields[]) => JSON.stringify(events.map((e) => ({ schema: 'gatehouse.event/v1', id: randomUUID(), time: new Date().toISOString(), ...e })));

/** POSTs `events` to `controlUrl`/v1/events as workload `spiffeId`; answers the status. */
export async function sendEvents(stateDir: string, controlUrl: string, spiffeId: string, events: Fields[]): Promise<number> {
  const id = await issueWorkloadIdentity(stateDir, spiffeId);
  return new Promise<number>((resolve, reject) => {
    const req = https.request(`${controlUrl}/v1/events`, { method: 'POST', cert: id.certPem, key: id.keyPem, ca: id.bundlePem, checkServerIdentity: () => undefined, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(batch(events));
  });
}

/** Like sendEvents, with the control plane's answer: `{ accepted, rejected }` on 202, the problem otherwise. */
export async function postEvents(stateDir: string, controlUrl: string, spiffeId: string, events: Fields[]): Promise<{ status: number; body: Record<string, unknown> }> {
  const id = await issueWorkloadIdentity(stateDir, spiffeId);
  return new Promise((resolve, reject) => {
    const req = https.request(`${controlUrl}/v1/events`, { method: 'POST', cert: id.certPem, key: id.keyPem, ca: id.bundlePem, checkServerIdentity: () => undefined, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(chunks).toString('utf8') || '{}') as Record<string, unknown> }));
    });
    req.on('error', reject);
    req.end(batch(events));
  });
}

/** A fresh temporary state dir with `yaml` as its gatehouse.yaml. */
export function topologyDir(prefix: string, yaml: string): { dir: string; file: string } {
  const dir = tempDir(prefix);
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, yaml);
  return { dir, file };
}
