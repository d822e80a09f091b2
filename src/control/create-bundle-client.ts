// The PEP side as a small library: keeps the newest verified bundle of one
// workload, from the control plane (mTLS, ETag, long-poll, the enforced
// revision reported on every poll), a URL of exported files, or a folder.
// The last verified bundle is kept on disk (0600) and is where a PEP starts
// when the control plane is unreachable; a disk bundle that does not verify is
// refused at start (counted, reported). A bundle that does not verify is never
// applied; one past expiresAt is dropped (current() is undefined: fail closed).
import { readBody } from '../shared/body.ts';
import https from 'node:https';
import type { ClientRequest } from 'node:http';
import { request as httpRequest } from '../shared/node-http.ts';
import { X509Certificate } from 'node:crypto';
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createControlAgent, type PepIdentity } from './lib/control-agent.ts';
import { GatehouseError } from '../shared/errors.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { verifyBundle, bundlePath, MAX_BUNDLE_BYTES, type VerifiedBundle } from '../policy/index.ts';

export interface BundleClientOptions {
  /** Base URL: the control plane's `…/v1/bundles`, or where exported files are served. One of url / dir. */
  url?: string;
  /** A folder of exported bundles (`gatehouse control export`). */
  dir?: string;
  /**
   * The workload's identity: its SPIFFE ID is the audience; cert/key are the
   * mTLS client certificate. A function is asked before each fetch, so a
   * renewed certificate is used for the next connection.
   */
  identity: PepIdentity | (() => PepIdentity);
  trustDomain: string;
  /** PEM root(s) of the trust domain. */
  caBundle: string;
  /** Where the last verified bundle is kept (<stateDir>/bundles/…, 0600). */
  stateDir: string;
  /** Called with every bundle applied (from disk at start, then each newer one). */
  onBundle?: (bundle: VerifiedBundle) => void;
  /** Called with every refusal (its code is a bundle_* code of the registry). */
  onRefused?: (error: GatehouseError) => void;
  clock?: Clock;
  /** Long-poll length asked of the control plane (default 30 s). */
  waitSeconds?: number;
  /** Poll interval for a folder or a server that does not long-poll (default 5 s). */
  pollIntervalMs?: number;
  /** Back-off after a failed fetch (default 1 s, doubling to 30 s). */
  retryMs?: number;
  /**
   * https URLs: the server must present spiffe://<td>/control (default true);
   * false for a plain web server holding exported files (verification of the
   * bundle itself does not depend on who served it).
   */
  controlServer?: boolean;
}

export interface BundleClientStats {
  applied: number;
  refused: Record<string, number>;
  lastRefusal?: string;
  fetchErrors: number;
  /** Where the current bundle came from. */
  source: 'none' | 'disk' | 'remote';
}

export interface BundleClient {
  /** Resolves once the disk bundle is checked (the client may then hold a bundle or none). */
  started: Promise<void>;
  /** The bundle in force, or undefined (none yet, or the last one expired: refuse everything). */
  current(): VerifiedBundle | undefined;
  /** The revision in force (0: none). */
  revision(): number;
  /**
   * Told of every change of the bundle in force: a newer one applied, or
   * undefined when the one in force expired (refuse everything). Returns the
   * unsubscribe function.
   */
  subscribe(listener: (bundle: VerifiedBundle | undefined) => void): () => void;
  /** Resolves when a bundle of at least `revision` is in force. */
  waitFor(revision: number, timeoutMs?: number): Promise<VerifiedBundle>;
  stats(): BundleClientStats;
  close(): Promise<void>;
}

export type { PepIdentity };

export function createBundleClient(options: BundleClientOptions): BundleClient {
  if ((options.url === undefined) === (options.dir === undefined)) throw new TypeError('give exactly one of url or dir');
  const clock = options.clock ?? systemClock;
  const identity = typeof options.identity === 'function' ? options.identity : ((id) => () => id)(options.identity);
  const audience = identity().spiffeId;
  const rel = bundlePath(audience, options.trustDomain);
  const diskFile = path.resolve(options.stateDir, 'bundles', rel.replace(/\//g, '_'));
  const wait = options.waitSeconds ?? 30;
  const pollMs = options.pollIntervalMs ?? 5000;
  const stats: BundleClientStats = { applied: 0, refused: {}, fetchErrors: 0, source: 'none' };
  let current: VerifiedBundle | undefined;
  let closed = false;
  let inflight: ClientRequest | undefined;
  let sleeping: { timer: NodeJS.Timeout; resolve(): void } | undefined;
  const waiters = new Set<{ revision: number; resolve(b: VerifiedBundle): void }>();
  const listeners = new Set<(bundle: VerifiedBundle | undefined) => void>();
  let expiry: NodeJS.Timeout | undefined;

  // one keep-alive connection, rebuilt when the workload certificate was renewed
  const control = options.url?.startsWith('https:')
    ? createControlAgent({ identity, caBundle: options.caBundle, trustDomain: options.trustDomain, controlServer: options.controlServer })
    : undefined;

  const notify = (bundle: VerifiedBundle | undefined) => {
    for (const l of listeners) {
      try {
        l(bundle);
      } catch {
        // a listener's failure is its own; the others are still told
      }
    }
  };

  const verify = (bytes: Uint8Array, minRevision: number) =>
    verifyBundle(bytes, { trustDomain: options.trustDomain, audience, caBundle: options.caBundle, now: clock.now(), minRevision });

  function refused(error: unknown): void {
    const e = error instanceof GatehouseError ? error : new GatehouseError('bundle_malformed', 'the bundle could not be checked', { cause: error });
    stats.refused[e.code] = (stats.refused[e.code] ?? 0) + 1;
    stats.lastRefusal = e.code;
    options.onRefused?.(e);
  }

  function apply(v: VerifiedBundle, source: 'disk' | 'remote'): void {
    current = v;
    stats.applied++;
    stats.source = source;
    if (source === 'remote') stats.lastRefusal = undefined; // as OPA's status: an error is reported until a good bundle replaces it
    // the moment this bundle stops being valid, PEPs are told (they refuse until a newer one)
    armExpiry(v);
    if (source === 'remote') {
      mkdirSync(path.dirname(diskFile), { recursive: true, mode: 0o700 });
      const tmp = `${diskFile}.${process.pid}.tmp`;
      writeFileSync(tmp, v.bytes, { mode: 0o600 });
      renameSync(tmp, diskFile);
    }
    options.onBundle?.(v);
    notify(v);
    for (const w of waiters) if (v.revision >= w.revision) {
      waiters.delete(w);
      w.resolve(v);
    }
  }

  // A timer may fire early (the event loop's clock lags under load) and a poll may
  // notice the expiry first: whichever sees it, the PEPs are told once.
  function armExpiry(v: VerifiedBundle): void {
    clearTimeout(expiry);
    const left = Date.parse(v.bundle.expiresAt) - clock.now();
    expiry = setTimeout(() => {
      if (current === v && inForce() === v) armExpiry(v);
    }, Math.min(Math.max(left, 0) + 5, 2 ** 31 - 1));
    expiry.unref();
  }

  function inForce(): VerifiedBundle | undefined {
    if (current && Date.parse(current.bundle.expiresAt) <= clock.now()) {
      current = undefined; // fail closed
      clearTimeout(expiry);
      queueMicrotask(() => {
        if (current === undefined && !closed) notify(undefined);
      });
    }
    return current;
  }

  /** True when `bytes` were applied. */
  async function offer(bytes: Uint8Array): Promise<boolean> {
    const held = inForce();
    if (held && Buffer.from(bytes).equals(Buffer.from(held.bytes))) return false;
    try {
      apply(await verify(bytes, held?.revision ?? current?.revision ?? 0), 'remote');
      return true;
    } catch (error) {
      refused(error);
      return false;
    }
  }

  const sleep = (ms: number) =>
    new Promise<void>((resolve) => {
      if (closed) return resolve();
      const timer = setTimeout(() => {
        sleeping = undefined;
        resolve();
      }, ms);
      sleeping = { timer, resolve };
    });

  function fetchOnce(): Promise<{ status: number; body?: Uint8Array }> {
    const held = inForce();
    const u = new URL(`${options.url!.replace(/\/+$/, '')}/${rel}`);
    u.searchParams.set('wait', String(wait));
    u.searchParams.set('revision', String(held?.revision ?? 0));
    const request = u.protocol === 'https:' ? https.request : httpRequest;
    return new Promise((resolve, reject) => {
      const req = request(
        u,
        {
          method: 'GET',
          agent: control?.agent(),
          headers: {
            ...(held ? { 'if-none-match': `"${held.digest}"` } : {}),
            'gatehouse-pep-revision': String(held?.revision ?? 0),
            // the status report: what this PEP last refused (shown by `gatehouse status`)
            ...(stats.lastRefusal ? { 'gatehouse-pep-refused': stats.lastRefusal } : {}),
          },
          timeout: (wait + 15) * 1000,
        },
        (res) => {
          // the one bounded reader: a bundle over the limit is cut off and refused before anything is parsed
          readBody(res, MAX_BUNDLE_BYTES).then(
            (body) => resolve({ status: res.statusCode ?? 0, body }),
            (error: unknown) =>
              reject(error instanceof GatehouseError && error.code === 'payload_too_large' ? new GatehouseError('bundle_too_large', 'the bundle is too large') : error),
          );
        },
      );
      inflight = req;
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end();
    });
  }

  async function loop(): Promise<void> {
    let backoff = options.retryMs ?? 1000;
    while (!closed) {
      const startedReal = Date.now();
      let quick = true;
      try {
        if (options.dir !== undefined) {
          let bytes: Buffer | undefined;
          try {
            bytes = readFileSync(path.resolve(options.dir, rel));
          } catch (error) {
            if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
          }
          if (bytes) await offer(bytes.length > MAX_BUNDLE_BYTES ? bytes : new Uint8Array(bytes));
        } else {
          const r = await fetchOnce();
          const applied = r.status === 200 && r.body ? await offer(r.body) : false;
          if (r.status !== 200 && r.status !== 304) throw new Error(`the bundle server answered ${r.status}`);
          // a server that long-polls held the request; a static one answered at once
          quick = Date.now() - startedReal < (wait * 1000) / 2;
          if (applied) quick = false; // poll again at once: the server holds it until the next change
        }
        backoff = options.retryMs ?? 1000;
        if (options.dir !== undefined || quick) await sleep(pollMs);
      } catch (error) {
        if (closed) break;
        if (error instanceof GatehouseError) refused(error);
        else stats.fetchErrors++;
        await sleep(backoff);
        backoff = Math.min(backoff * 2, 30_000);
      }
    }
  }

  const started = (async () => {
    let bytes: Buffer | undefined;
    try {
      bytes = readFileSync(diskFile);
    } catch {
      // no bundle kept yet
    }
    if (bytes) {
      try {
        apply(await verify(new Uint8Array(bytes), 0), 'disk');
      } catch (error) {
        refused(error); // tampered, expired or someone else's: start with none (fail closed)
      }
    }
  })();
  void started.then(() => loop());

  return {
    started,
    current: inForce,
    revision: () => inForce()?.revision ?? 0,
    waitFor(revision, timeoutMs = 10_000) {
      const held = inForce();
      if (held && held.revision >= revision) return Promise.resolve(held);
      return new Promise((resolve, reject) => {
        const w = {
          revision,
          resolve: (b: VerifiedBundle) => {
            clearTimeout(t);
            resolve(b);
          },
        };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`revision ${revision} not in force after ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    subscribe(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    stats: () => ({ ...stats, refused: { ...stats.refused } }),
    async close() {
      closed = true;
      clearTimeout(expiry);
      listeners.clear();
      inflight?.destroy();
      if (sleeping) {
        clearTimeout(sleeping.timer);
        sleeping.resolve();
      }
      control?.destroy();
    },
  };
}

/** The SPIFFE ID a certificate chain (PEM, leaf first) names, for callers holding only files. */
export function spiffeIdOf(certPem: string): string | undefined {
  const san = new X509Certificate(certPem).subjectAltName ?? '';
  return /^URI:(spiffe:\/\/\S+)$/.exec(san)?.[1];
}
