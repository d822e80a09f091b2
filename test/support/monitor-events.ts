// Security events sent the way an enforcement point sends them: a batch over
// mTLS with the PEP's own workload certificate (issued by the test's CA), or
// as a local component (a zone authority) to the control plane's admin listener.
import https from 'node:https';
import { randomUUID } from 'node:crypto';
import { issueWorkloadIdentity } from '../../src/pki/index.ts';

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
