// Starts real zone authorities for tests: a topology written to a temp dir,
// HTTPS with the dev CA, and a fetch that trusts that CA (for openid-client
// and for the small browser in authority-browser.ts).
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Agent, fetch as undiciFetch } from 'undici';
import * as oidc from 'openid-client';
import { generate } from 'otplib';
import { loadTopology } from '../../src/topology/load.ts';
import { startAuthority, type RunningAuthority, type StartAuthorityOptions } from '../../src/authority/index.ts';
import type { Clock } from '../../src/shared/clock.ts';
import pg from 'pg';

export const REDIRECT = 'http://127.0.0.1:8765/callback';

/** Real time plus an offset the test can move forward (throttle delays, TOTP steps, key activation). */
/**
 * The authority's clock in tests: moved forward with `advance`, or held still
 * with `freeze` (a burst of requests then happens at one instant, however
 * slowly the machine answers them) until `thaw`.
 */
export function offsetClock(): Clock & { advance(ms: number): void; freeze(): void; thaw(): void } {
  let offset = 0;
  let frozenAt: number | undefined;
  return {
    now: () => frozenAt ?? Date.now() + offset,
    advance(ms: number) {
      offset += ms;
      if (frozenAt !== undefined) frozenAt += ms;
    },
    freeze() {
      frozenAt = Date.now() + offset;
    },
    thaw() {
      frozenAt = undefined;
    },
  };
}

export function tempDir(prefix = 'gh-authority-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(path.join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export type TestFetch = (input: string | URL | Request, init?: RequestInit) => Promise<Response>;

export function trustingFetch(caFile: string): { fetch: TestFetch; close(): Promise<void> } {
  const agent = new Agent({ connect: { ca: readFileSync(caFile, 'utf8') } });
  const f = ((input: any, init?: any) => undiciFetch(input, { ...init, dispatcher: agent })) as unknown as TestFetch;
  return { fetch: f, close: () => agent.close() };
}

export interface Harness {
  dir: string;
  auth: RunningAuthority;
  fetch: TestFetch;
  clock: ReturnType<typeof offsetClock>;
  audit: Record<string, unknown>[];
  /** openid-client configuration for a client of this authority */
  discover(clientId: string, auth?: oidc.ClientAuth, metadata?: Partial<oidc.ClientMetadata>): Promise<oidc.Configuration>;
  totp(secret: string): Promise<string>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** YAML of the zone's authority block (indented under `authority:`) */
  authorityYaml?: string;
  zone?: string;
  /** extra zones (full YAML of each zone, keyed by name) */
  extraZones?: Record<string, string>;
  dir?: string;
  keepDir?: boolean;
  options?: Partial<StartAuthorityOptions>;
}

export function writeTopology(dir: string, zones: Record<string, string>): string {
  const file = path.join(dir, 'gatehouse.yaml');
  const body = Object.entries(zones)
    .map(([name, yaml]) => `  ${name}:\n${yaml.replace(/^/gm, '    ')}`)
    .join('\n');
  writeFileSync(file, `version: 1\ntrustDomain: test.local\nzones:\n${body}\n`);
  return file;
}

export const DEFAULT_AUTHORITY = `listen: 127.0.0.1:0
scopes: [orders:read, orders:write, catalog:read]
`;

export async function startHarness(o: HarnessOptions = {}): Promise<Harness> {
  const tmp = o.dir ? { dir: o.dir, remove() {} } : tempDir();
  const zone = o.zone ?? 'public';
  const authorityYaml = o.authorityYaml ?? DEFAULT_AUTHORITY;
  const file = writeTopology(tmp.dir, { [zone]: `authority:\n${authorityYaml.replace(/^/gm, '  ')}`, ...(o.extraZones ?? {}) });
  const clock = offsetClock();
  const audit: Record<string, unknown>[] = [];
  const auth = await startAuthority({
    topology: loadTopology(file),
    zone,
    stateDir: path.join(tmp.dir, 'state'),
    dev: true,
    clock,
    keyPollMs: 200,
    onAudit: (e) => audit.push(e),
    logger: silentLogger(),
    ...o.options,
  });
  const tf = trustingFetch(auth.caFile!);
  return {
    dir: tmp.dir,
    auth,
    fetch: tf.fetch,
    clock,
    audit,
    async discover(clientId, clientAuth, metadata) {
      const config = await oidc.discovery(new URL(auth.issuer), clientId, metadata, clientAuth, {
        [oidc.customFetch]: tf.fetch as any,
      });
      return config;
    },
    totp: (secret) => generate({ secret, epoch: Math.floor(clock.now() / 1000) }),
    async close() {
      await auth.close();
      await tf.close();
      if (!o.keepDir) tmp.remove();
    },
  };
}

import { pino } from 'pino';
export function silentLogger() {
  return pino({ level: 'silent' });
}

/** Postgres for tests: a URL with a unique schema, or a reason it is not there. */
export async function postgresForTests(): Promise<{ url: string; drop(): Promise<void> } | { skip: string }> {
  const base = process.env.GATEHOUSE_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/test';
  const schema = `gh_test_${process.pid}_${Date.now().toString(36)}_${Math.floor(Math.random() * 1e6)}`;
  const client = new pg.Client({ connectionString: base, connectionTimeoutMillis: 2_000 });
  try {
    await client.connect();
    await client.query('select 1');
  } catch (error) {
    await client.end().catch(() => {});
    const reason = `PostgreSQL is not reachable at ${base.replace(/\/\/[^@]*@/, '//')} (${(error as Error).message})`;
    if (process.env.CI === 'true') throw new Error(`${reason}; CI=true requires it`);
    return { skip: reason };
  }
  await client.end();
  const url = `${base}${base.includes('?') ? '&' : '?'}schema=${schema}`;
  return {
    url,
    async drop() {
      const c = new pg.Client({ connectionString: base });
      await c.connect();
      await c.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`);
      await c.end();
    },
  };
}
