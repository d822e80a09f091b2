// The vault SDK for services (`gatehouse/vault`): calls the vault's API over
// mTLS with the service's own workload certificate (renewed certificates are
// picked up on the next call), and protects records field by field. The
// server must present spiffe://<td>/vault (its trust domain: the service's
// own) chaining to the trust bundle of the service's identity; any other
// server — another workload of the trust domain, a certificate of another CA —
// is refused before a byte is sent.
//
//   const vault = createVaultClient({ url, identity });
//   const row = await vault.encryptFields(order, { key: 'orders-pii', fields: ['address'], context: `orders/${order.id}` });
//   const back = await vault.decryptFields(row, { key: 'orders-pii', fields: ['address'], context: `orders/${order.id}` });
//   const token = await vault.tokenize('orders-card', '4111111111111111');
//
// Each field's context is `<context>/<field>`, so a ciphertext moved to
// another record or another column does not decrypt.
import https from 'node:https';
import { GatehouseError, type ProblemCode } from '../shared/errors.ts';
import { readBody } from '../shared/body.ts';

/** The vault reads at most 2 MiB a request; its answer (base64 ciphertexts) stays within twice that. */
const MAX_ANSWER_BYTES = 4 * 1024 * 1024;
import type { WorkloadIdentity } from '../pki/workload-identity.ts';
import type { PeerCertificate } from 'node:tls';
import { vaultSpiffeId } from '../pki/spiffe-id.ts';

export interface VaultClientOptions {
  /** The vault's URL (endpoints.json `vault`). */
  url: string;
  /** This service's certificate: a fixed identity or anything with current() (an IdentityManager). */
  identity: WorkloadIdentity | { current(): WorkloadIdentity };
  /**
   * No longer used: the vault is verified as spiffe://<td>/vault against the
   * trust bundle of `identity` (an older vault's dev-CA certificate is refused).
   */
  ca?: string;
  /** Per call (default 10 s). */
  timeoutMs?: number;
}

export interface FieldSpec {
  key: string;
  /** Fields to protect; absent or null values are left as they are. */
  fields: readonly string[];
  /** The record's context (service, table, record id …); each field adds `/<field>`. */
  context: string;
}

export interface VaultClient {
  encrypt(key: string, plaintext: string | Uint8Array, context: string): Promise<string>;
  decrypt(key: string, ciphertext: string, context: string): Promise<Buffer>;
  encryptBatch(key: string, items: { plaintext: string | Uint8Array; context: string }[]): Promise<string[]>;
  decryptBatch(key: string, items: { ciphertext: string; context: string }[]): Promise<Buffer[]>;
  rewrap(key: string, ciphertext: string, context: string): Promise<string>;
  datakey(key: string, context: string): Promise<{ plaintext: Buffer; ciphertext: string }>;
  tokenize(key: string, value: string): Promise<string>;
  detokenize(key: string, token: string): Promise<string>;
  /** A copy of `record` with the spec's string fields encrypted (one batch call). */
  encryptFields<T extends Record<string, unknown>>(record: T, spec: FieldSpec): Promise<T>;
  /** A copy of `record` with the spec's fields decrypted (one batch call). */
  decryptFields<T extends Record<string, unknown>>(record: T, spec: FieldSpec): Promise<T>;
  close(): void;
}

/** A refusal of the vault, with its registry code (vault_not_allowed, vault_decrypt_failed …). */
export class VaultRequestError extends GatehouseError {}

const isIdentity = (i: VaultClientOptions['identity']): i is WorkloadIdentity => 'certPem' in i;

const trustDomainOf = (spiffeId: string): string => /^spiffe:\/\/([^/]+)\//.exec(spiffeId)?.[1] ?? '';

/** The server is the vault of `trustDomain`: its certificate's one URI SAN is spiffe://<td>/vault (names and IPs are not what is checked). */
export function checkVault(peer: PeerCertificate, trustDomain: string): Error | undefined {
  const expected = vaultSpiffeId(trustDomain);
  const uris = (peer.subjectaltname ?? '')
    .split(', ')
    .filter((n) => n.startsWith('URI:'))
    .map((n) => n.slice(4));
  if (trustDomain !== '' && uris.length === 1 && uris[0] === expected) return undefined;
  return new VaultRequestError('certificate_rejected', `the server is not ${expected} (it presented ${uris.length === 0 ? 'no SPIFFE ID' : uris.join(' ').slice(0, 200)})`);
}

export function createVaultClient(options: VaultClientOptions): VaultClient {
  const base = new URL(options.url);
  if (base.protocol !== 'https:') throw new Error('the vault is reached over https (mTLS) only');
  let agent: https.Agent | undefined;
  let serial = '';
  const agentFor = (): https.Agent => {
    const id = isIdentity(options.identity) ? options.identity : options.identity.current();
    if (!agent || id.serial !== serial) {
      agent?.destroy();
      serial = id.serial;
      agent = new https.Agent({
        cert: id.certPem,
        key: id.keyPem,
        ca: id.bundlePem,
        checkServerIdentity: (_host, peer) => checkVault(peer, trustDomainOf(id.spiffeId)),
        keepAlive: true,
        maxSockets: 16,
        minVersion: 'TLSv1.3',
      });
    }
    return agent;
  };

  const call = (op: string, key: string, body: unknown): Promise<any> =>
    new Promise((resolve, reject) => {
      const text = JSON.stringify(body);
      const req = https.request(
        new URL(`/v1/${op}/${encodeURIComponent(key)}`, base),
        {
          method: 'POST',
          agent: agentFor(),
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) },
          timeout: options.timeoutMs ?? 10_000,
        },
        (res) => {
          // the one bounded reader: a vault answer is a JSON document of bounded size (a batch of MAX_ANSWER_BYTES at most)
          readBody(res, MAX_ANSWER_BYTES).then((bytes) => {
            let parsed: any;
            try {
              parsed = JSON.parse(bytes.toString('utf8'));
            } catch {
              return reject(new VaultRequestError('bad_gateway', `the vault answered ${res.statusCode} without JSON`));
            }
            if (res.statusCode === 200) return resolve(parsed);
            reject(new VaultRequestError((parsed?.code as ProblemCode) ?? 'bad_gateway', String(parsed?.detail ?? `the vault answered ${res.statusCode}`)));
          }, (error: unknown) => reject(new VaultRequestError('bad_gateway', 'the vault answer was too large or broken off', { cause: error })));
        },
      );
      req.on('timeout', () => req.destroy(new VaultRequestError('gateway_timeout', 'the vault did not answer in time')));
      req.on('error', reject);
      req.end(text);
    });

  /** Batch answers in order; the first refused field fails the whole call (nothing half-protected is returned). */
  const batch = async (op: string, key: string, items: object[]): Promise<any[]> => {
    if (items.length === 0) return [];
    const out: any[] = [];
    for (let i = 0; i < items.length; i += 1000) {
      const r = (await call(op, key, { batch: items.slice(i, i + 1000) })) as { batch: any[] };
      for (const a of r.batch) {
        if (a.error) throw new VaultRequestError(a.error.code, a.error.detail);
        out.push(a);
      }
    }
    return out;
  };
  const b64 = (p: string | Uint8Array) => Buffer.from(typeof p === 'string' ? Buffer.from(p, 'utf8') : p).toString('base64');
  const present = (record: Record<string, unknown>, spec: FieldSpec) => spec.fields.filter((f) => record[f] !== undefined && record[f] !== null);

  const client: VaultClient = {
    async encrypt(key, plaintext, context) {
      return (await call('encrypt', key, { plaintext: b64(plaintext), context })).ciphertext;
    },
    async decrypt(key, ciphertext, context) {
      return Buffer.from((await call('decrypt', key, { ciphertext, context })).plaintext, 'base64');
    },
    async encryptBatch(key, items) {
      return (await batch('encrypt', key, items.map((i) => ({ plaintext: b64(i.plaintext), context: i.context })))).map((a) => a.ciphertext);
    },
    async decryptBatch(key, items) {
      return (await batch('decrypt', key, items)).map((a) => Buffer.from(a.plaintext, 'base64'));
    },
    async rewrap(key, ciphertext, context) {
      return (await call('rewrap', key, { ciphertext, context })).ciphertext;
    },
    async datakey(key, context) {
      const r = await call('datakey', key, { context });
      return { plaintext: Buffer.from(r.plaintext, 'base64'), ciphertext: r.ciphertext };
    },
    async tokenize(key, value) {
      return (await call('tokenize', key, { value })).token;
    },
    async detokenize(key, token) {
      return (await call('detokenize', key, { token })).value;
    },
    async encryptFields(record, spec) {
      const fields = present(record, spec);
      for (const f of fields) if (typeof record[f] !== 'string') throw new TypeError(`field ${f} must be a string to encrypt`);
      const cts = await client.encryptBatch(spec.key, fields.map((f) => ({ plaintext: record[f] as string, context: `${spec.context}/${f}` })));
      const out: Record<string, unknown> = { ...record };
      fields.forEach((f, i) => (out[f] = cts[i]));
      return out as typeof record;
    },
    async decryptFields(record, spec) {
      const fields = present(record, spec);
      const pts = await client.decryptBatch(spec.key, fields.map((f) => ({ ciphertext: String(record[f]), context: `${spec.context}/${f}` })));
      const out: Record<string, unknown> = { ...record };
      fields.forEach((f, i) => (out[f] = pts[i].toString('utf8')));
      return out as typeof record;
    },
    close() {
      agent?.destroy();
      agent = undefined;
    },
  };
  return client;
}
