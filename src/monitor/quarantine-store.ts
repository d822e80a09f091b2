// Quarantines: time-boxed decisions that every enforcement point applies
// beside the topology (CrowdSec's decisions: scope, value, duration, origin).
// Kept by the control plane in <stateDir>/control/quarantines.json (0600,
// replaced atomically); each change is published in the next bundles, so it
// reaches every gateway and mesh service through the long-poll. A decision
// ends by itself at `until`; one for the same scope and value replaces the
// earlier one.
//   source   a client network (CIDR): refused at every gateway
//   client   an OAuth client id: its tokens are refused at every gateway
//   subject  a token subject or API-key consumer: refused at every gateway
//   service  a workload: it loses every edge, in and out
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { GatehouseError } from '../shared/errors.ts';
import type { Clock } from '../shared/clock.ts';
import type { Topology } from '../topology/schema.ts';
import { ingressCidrProblem } from '../topology/primitives.ts';
import type { Quarantine } from '../policy/index.ts';

export type QuarantineScope = Quarantine['scope'];
export const QUARANTINE_SCOPES: readonly QuarantineScope[] = ['source', 'client', 'subject', 'service'];

/** The longest quarantine (a decision is time-boxed; a permanent ban belongs in the topology). */
export const MAX_QUARANTINE_MS = 30 * 24 * 3600_000;
const MAX_ENTRIES = 10_000;

export interface QuarantineRequest {
  scope: QuarantineScope;
  value: string;
  /** How long, in milliseconds (1 s to 30 days). */
  forMs: number;
  reason: string;
  origin?: string;
}

export interface QuarantineStore {
  /** The decisions in force, oldest first. */
  list(): Quarantine[];
  add(request: QuarantineRequest): Quarantine;
  /** False when no decision in force had this scope and value. */
  remove(scope: QuarantineScope, value: string): boolean;
  /** When the next decision ends (ms since the epoch), or undefined. */
  nextExpiry(): number | undefined;
}

const invalid = (detail: string) => new GatehouseError('unprocessable', detail);
const PRINTABLE = /^[\x20-\x7e]+$/;

/** The value of a request, checked for its scope; throws a 422 naming what is wrong. */
export function checkQuarantine(r: QuarantineRequest, topology: Topology | undefined): void {
  if (!QUARANTINE_SCOPES.includes(r.scope)) throw invalid(`scope must be one of ${QUARANTINE_SCOPES.join(', ')}`);
  if (typeof r.value !== 'string' || r.value.length === 0 || r.value.length > 256 || !PRINTABLE.test(r.value))
    throw invalid('value must be 1 to 256 printable ASCII characters');
  if (r.scope === 'source') {
    const problem = ingressCidrProblem(r.value);
    if (problem) throw invalid(`source: ${problem}`);
  }
  if (r.scope === 'service' && topology && !Object.hasOwn(topology.services, r.value)) throw invalid(`service: the topology has no service ${JSON.stringify(r.value)}`);
  if (!Number.isSafeInteger(r.forMs) || r.forMs < 1000 || r.forMs > MAX_QUARANTINE_MS) throw invalid('for must be from 1s to 30d');
  if (typeof r.reason !== 'string' || r.reason.trim().length === 0 || r.reason.length > 500 || /[\x00-\x1f\x7f]/.test(r.reason))
    throw invalid('reason must be 1 to 500 characters without control characters');
  if (r.origin !== undefined && (typeof r.origin !== 'string' || !/^[a-z][a-z0-9_:-]{0,63}$/.test(r.origin))) throw invalid('origin must be a short lowercase name');
}

export function openQuarantineStore(stateDir: string, clock: Clock, topology?: () => Topology): QuarantineStore {
  const file = path.resolve(stateDir, 'control', 'quarantines.json');
  let entries: Quarantine[] = [];
  try {
    const data = JSON.parse(readFileSync(file, 'utf8')) as { quarantines?: Quarantine[] };
    entries = Array.isArray(data.quarantines) ? data.quarantines.filter((q) => typeof q?.value === 'string' && !Number.isNaN(Date.parse(q.until))) : [];
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${file}: unreadable quarantine list (${(error as Error).message}); fix or remove it`);
  }
  const inForce = () => {
    const now = clock.now();
    entries = entries.filter((q) => Date.parse(q.until) > now);
    return entries;
  };
  const save = () => {
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify({ quarantines: entries }, null, 2) + '\n', { mode: 0o600 });
    renameSync(tmp, file);
  };
  return {
    list: () => [...inForce()],
    add(r) {
      checkQuarantine(r, topology?.());
      const list = inForce().filter((q) => !(q.scope === r.scope && q.value === r.value));
      if (list.length >= MAX_ENTRIES) throw new GatehouseError('unprocessable', `at most ${MAX_ENTRIES} quarantines are in force at once`);
      const q: Quarantine = {
        scope: r.scope,
        value: r.value,
        until: new Date(clock.now() + r.forMs).toISOString(),
        reason: r.reason.trim(),
        origin: r.origin ?? 'operator',
      };
      entries = [...list, q];
      save();
      return q;
    },
    remove(scope, value) {
      const before = inForce().length;
      entries = entries.filter((q) => !(q.scope === scope && q.value === value));
      if (entries.length === before) return false;
      save();
      return true;
    },
    nextExpiry() {
      const times = inForce().map((q) => Date.parse(q.until));
      return times.length ? Math.min(...times) : undefined;
    },
  };
}

/** `15m`, `2h`, `1d`, `30s`, `500ms` → milliseconds. */
export function parseDuration(text: string): number {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text.trim());
  if (!m) throw invalid(`expected a duration like 30s, 15m, 2h or 1d, got ${JSON.stringify(text.slice(0, 40))}`);
  return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
}
