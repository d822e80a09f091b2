// `gatehouse vault`: the vault's HTTP API over mTLS, in the spirit of Vault's
// transit engine. Lifecycle: provision (topology, store, master key check,
// the topology's keys created when missing, TLS) → serve → close.
//
//   POST /v1/<op>/<key>   op: encrypt | decrypt | rewrap | datakey | tokenize | detokenize
//     one field:  encrypt { plaintext: base64, context } → { ciphertext }
//                 decrypt { ciphertext, context } → { plaintext: base64 }
//                 rewrap { ciphertext, context } → { ciphertext }
//                 datakey { context } → { plaintext: base64, ciphertext }
//                 tokenize { value } → { token };  detokenize { token } → { value }
//     a batch:    { batch: [ <one field>, … ] } (at most 1000) → { batch: [ { … } | { error: { code, detail } } ] }
//
// The caller is the SPIFFE ID of its verified client certificate (the trust
// domain's CA; revoked serials refused); the topology's `vault.keys.<key>.<op>`
// must name the caller's service, else 403 vault_not_allowed (deny by
// default). Every request is audited (lib/audit.ts). The server's certificate
// is spiffe://<td>/vault from the trust domain's CA (lib/server-identity.ts),
// re-issued at half its lifetime; the SDK refuses any other server.
// Following a control plane (`control`, else $GATEHOUSE_CONTROL_URL), each
// refused caller is a security event (vault_denied: the caller's SPIFFE ID
// as peer, the operation and key), sent over mTLS with the vault's own
// certificate by the shared shipper (a request never waits on it).
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { TLSSocket } from 'node:tls';
import { loadTopology } from '../topology/load.ts';
import { verifySvid, callerName, trustBundlePath, localRevocations, type SvidDecision } from '../pki/index.ts';
import { listen } from '../shared/listen.ts';
import { readBody } from '../shared/body.ts';
import { writeProblem, asProblem } from '../shared/problem.ts';
import { GatehouseError, MethodNotAllowed, NotFound, UnsupportedMediaType } from '../shared/errors.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { parseListen } from '../topology/schema.ts';
import { openVault, type Vault } from './open-vault.ts';
import { createVaultAudit, type VaultAudit } from './lib/audit.ts';
import { issueVaultIdentity, type VaultServerIdentity } from './lib/server-identity.ts';
import { createEventShipper } from '../control/create-event-shipper.ts';
import { VAULT_OPERATIONS, grantsOf, type VaultOperation } from './lib/grants.ts';

/** Largest request body: a batch of 1000 fields, or one field of 1 MiB as base64. */
const MAX_BODY_BYTES = 2 * 1024 * 1024;
const MAX_BATCH = 1000;

export interface StartVaultServerOptions {
  config: string;
  stateDir: string;
  /** Overrides `vault.listen`. */
  listen?: string;
  clock?: Clock;
  logger?: Logger;
  env?: NodeJS.ProcessEnv;
  /** The control plane (https://…, its bundles URL will do): refusals are sent there as events. Absent: env GATEHOUSE_CONTROL_URL, else none. */
  control?: string;
}

export interface VaultServer {
  url: string;
  vault: Vault;
  close(): Promise<void>;
}

type Field = Record<string, unknown>;

const FIELDS: Record<VaultOperation, readonly string[]> = {
  encrypt: ['plaintext', 'context'],
  decrypt: ['ciphertext', 'context'],
  rewrap: ['ciphertext', 'context'],
  datakey: ['context'],
  tokenize: ['value'],
  detokenize: ['token'],
};

const bad = (detail: string) => new GatehouseError('bad_request', detail);

function base64Field(v: unknown): Buffer {
  if (typeof v !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(v) || v.length % 4 !== 0) throw bad('plaintext must be base64');
  return Buffer.from(v, 'base64');
}

async function runOne(vault: Vault, op: VaultOperation, key: string, f: unknown): Promise<Field> {
  if (f === null || typeof f !== 'object' || Array.isArray(f)) throw bad('each field is a JSON object');
  const allowed = FIELDS[op];
  for (const k of Object.keys(f)) if (!allowed.includes(k)) throw bad(`${op} takes ${allowed.join(', ')}`);
  const o = f as Field;
  const str = (name: string): string => {
    if (typeof o[name] !== 'string') throw bad(`${name} must be a string`);
    return o[name] as string;
  };
  switch (op) {
    case 'encrypt':
      return { ciphertext: await vault.encrypt(key, base64Field(o.plaintext), str('context')) };
    case 'decrypt':
      return { plaintext: (await vault.decrypt(key, str('ciphertext'), str('context'))).toString('base64') };
    case 'rewrap':
      return { ciphertext: await vault.rewrap(key, str('ciphertext'), str('context')) };
    case 'datakey': {
      const dk = await vault.datakey(key, str('context'));
      return { plaintext: dk.plaintext.toString('base64'), ciphertext: dk.ciphertext };
    }
    case 'tokenize':
      return { token: await vault.tokenize(key, str('value')) };
    case 'detokenize':
      return { value: await vault.detokenize(key, str('token')) };
  }
}

export async function startVaultServer(options: StartVaultServerOptions): Promise<VaultServer> {
  const clock = options.clock ?? systemClock;
  const log = (options.logger ?? createLogger({ name: 'vault' })).child({ component: 'vault' });
  const loaded = loadTopology(options.config);
  const { topology } = loaded;
  const config = topology.vault;
  if (!config) throw new Error(`${loaded.file} has no vault section; nothing to serve`);
  for (const [key, k] of Object.entries(config.keys))
    for (const op of VAULT_OPERATIONS)
      for (const s of k[op])
        if (!topology.services[s]) throw new Error(`vault.keys.${key}.${op}: no service ${s} in the topology`);
  const at = parseListen(options.listen ?? config.listen);
  if (typeof at === 'string') throw new Error(`vault listen: ${at}`);
  const bundle = trustBundlePath(options.stateDir);
  if (!existsSync(bundle)) throw new Error(`the vault needs the trust domain's CA in the state dir (gatehouse ca init); ${bundle} is missing`);

  const vault = await openVault({ stateDir: options.stateDir, storage: config.storage, clock, env: options.env });
  const revocations = localRevocations(options.stateDir);
  try {
    for (const [name, k] of Object.entries(config.keys)) {
      const info = await vault.ensureKey(name, { tokens: k.tokens, deterministic: k.deterministic });
      if (info.tokens !== k.tokens || info.deterministic !== k.deterministic)
        log.warn({ key: name }, 'the stored key keeps the token settings it was created with; the topology says otherwise');
    }
  } catch (error) {
    await vault.close();
    throw error;
  }
  const allowed = grantsOf(config);
  const audit: VaultAudit = createVaultAudit(options.stateDir, clock.now);
  const names = [...new Set(['127.0.0.1', 'localhost', '::1', at.host])];
  let identity: VaultServerIdentity;
  try {
    identity = await issueVaultIdentity({ stateDir: options.stateDir, names, clock, env: options.env });
  } catch (error) {
    await vault.close();
    throw error;
  }
  const caPem = readFileSync(bundle, 'utf8');
  const control = options.control ?? ((options.env ?? process.env).GATEHOUSE_CONTROL_URL || undefined);
  const events = control
    ? createEventShipper({
        url: new URL(control).origin,
        identity: () => ({ spiffeId: identity.spiffeId, certPem: identity.certPem, keyPem: identity.keyPem }),
        trustDomain: topology.trustDomain,
        caBundle: caPem,
        clock,
      })
    : undefined;
  const secure = (id: VaultServerIdentity) => ({
    cert: id.certPem,
    key: id.keyPem,
    ca: caPem,
    // TLS 1.3 only: every caller is a Gatehouse SDK or CLI, and 1.3 has AEAD suites only (no CBC, no SHA-1)
    minVersion: 'TLSv1.3' as const,
  });

  const server = https.createServer(
    {
      ...secure(identity),
      requestCert: true,
      rejectUnauthorized: true, // no certificate of the trust domain: no TLS session at all
      maxHeaderSize: 16 * 1024,
      headersTimeout: 10_000,
      requestTimeout: 30_000,
      keepAliveTimeout: 5_000,
    },
    (req, res) => {
      const requestId = randomUUID();
      const seen: { caller?: string; op?: string; key?: string; items?: number } = {};
      handle(req, res, requestId, seen).catch((error: unknown) => {
        const e = asProblem(error);
        if (e.code === 'internal') log.error({ err: error, request_id: requestId }, 'vault request failed');
        audit({ caller: seen.caller ?? 'unverified', op: seen.op ?? 'unknown', key: seen.key, items: seen.items, outcome: e.status >= 500 ? 'error' : 'refused', code: e.code, request_id: requestId });
        if (e.code === 'vault_not_allowed' || e.code === 'certificate_rejected')
          events?.emit({ type: 'vault_denied', code: e.code, peer: seen.caller, source: req.socket.remoteAddress, detail: seen.op ? `${seen.op} ${seen.key ?? ''}`.trim() : undefined });
        writeProblem(res, e, requestId);
      });
    },
  );

  const peers = new WeakMap<TLSSocket, SvidDecision>();
  const peerOf = (socket: TLSSocket): SvidDecision => {
    let d = peers.get(socket);
    if (!d) {
      const cert = socket.getPeerCertificate(false);
      d = cert?.raw
        ? verifySvid(cert.raw, { trustDomain: topology.trustDomain, now: clock.now(), purpose: 'client', isRevoked: (s) => revocations.isRevoked(s) })
        : { ok: false, reason: 'unparseable' };
      peers.set(socket, d);
    }
    return d;
  };

  async function handle(req: IncomingMessage, res: ServerResponse, requestId: string, seen: { caller?: string; op?: string; key?: string; items?: number }): Promise<void> {
    const decision = peerOf(req.socket as TLSSocket);
    // a kept-alive connection's certificate is verified once; its lifetime and revocation on every request
    if (!decision.ok || clock.now() > decision.notAfter.getTime() || revocations.isRevoked(decision.serial))
      throw new GatehouseError('certificate_rejected', 'the client certificate is not a workload identity of this trust domain');
    seen.caller = decision.id.uri;
    const m = /^\/v1\/([a-z]+)\/([a-z][a-z0-9-]{0,62})$/.exec(req.url ?? '');
    if (!m || !(VAULT_OPERATIONS as readonly string[]).includes(m[1])) throw NotFound('No such vault operation.');
    const op = m[1] as VaultOperation;
    const key = m[2];
    seen.op = op;
    seen.key = key;
    if (req.method !== 'POST') throw MethodNotAllowed(['POST']);
    // deny by default: only a service the topology names for this key and operation
    if (decision.id.kind !== 'service' || !allowed(key, op, callerName(decision.id)))
      throw new GatehouseError('vault_not_allowed', `this workload may not ${op} with key ${key}`);
    const type = String(req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
    if (type !== 'application/json') throw UnsupportedMediaType('send application/json');
    const raw = await readBody(req, MAX_BODY_BYTES);
    let body: unknown;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      throw bad('the body is not JSON');
    }
    let answer: unknown;
    let failed = 0;
    if (body !== null && typeof body === 'object' && !Array.isArray(body) && 'batch' in body) {
      const batch = (body as { batch: unknown }).batch;
      if (Object.keys(body).length !== 1 || !Array.isArray(batch) || batch.length === 0 || batch.length > MAX_BATCH)
        throw bad(`batch is an array of 1 to ${MAX_BATCH} fields`);
      seen.items = batch.length;
      const out: unknown[] = [];
      // one after another: a batch is no way around the store's pace, and its order is the answer's
      for (const f of batch) {
        try {
          out.push(await runOne(vault, op, key, f));
        } catch (error) {
          const e = asProblem(error);
          if (e.code === 'internal') throw error;
          failed++;
          out.push({ error: { code: e.code, detail: e.message } });
        }
      }
      answer = { batch: out };
    } else {
      seen.items = 1;
      answer = await runOne(vault, op, key, body);
    }
    const text = JSON.stringify(answer);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      'x-request-id': requestId,
    });
    res.end(text);
    audit({ caller: seen.caller, op, key, items: seen.items, ...(failed > 0 ? { failed } : {}), outcome: 'ok', request_id: requestId });
  }

  // a peer without a certificate of the trust domain never reaches a handler: its refusal is audited here
  server.on('tlsClientError', (error: Error & { code?: string }) => {
    audit({ caller: 'unverified', op: 'tls', outcome: 'refused', code: 'client_certificate_required' });
    log.warn({ code: error.code }, 'TLS handshake refused');
  });
  // a fresh certificate at half the lifetime (a failure is retried in a minute; the old one serves meanwhile)
  let renewal: NodeJS.Timeout | undefined;
  const scheduleRenewal = (delayMs: number) => {
    renewal = setTimeout(() => {
      issueVaultIdentity({ stateDir: options.stateDir, names, clock, env: options.env }).then(
        (fresh) => {
          identity = fresh;
          server.setSecureContext(secure(fresh));
          log.info({ spiffe_id: fresh.spiffeId, not_after: new Date(fresh.notAfter).toISOString() }, 'vault certificate renewed');
          scheduleRenewal((fresh.notAfter - clock.now()) / 2);
        },
        (error: unknown) => {
          log.error({ err: error }, 'vault certificate renewal failed; retrying in a minute');
          scheduleRenewal(60_000);
        },
      );
    }, Math.max(1000, delayMs));
    renewal.unref();
  };
  scheduleRenewal((identity.notAfter - clock.now()) / 2);
  let bound: Awaited<ReturnType<typeof listen>>;
  try {
    bound = await listen(server, at, 'https');
  } catch (error) {
    clearTimeout(renewal);
    await events?.close();
    revocations.close();
    await vault.close();
    throw error;
  }
  log.info({ url: bound.url, spiffe_id: identity.spiffeId, keys: Object.keys(config.keys), storage: vault.kind, master_key: vault.masterKeySource }, 'vault serving');
  return {
    url: bound.url,
    vault,
    async close() {
      clearTimeout(renewal);
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      await events?.close();
      revocations.close();
      await vault.close();
    },
  };
}
