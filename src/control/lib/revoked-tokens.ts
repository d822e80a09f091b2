// The control plane's list of revoked access-token ids (decisions.revokedTokenIds
// in every gateway's and authority's bundle). An authority reports a revocation
// as a `token_revoked` security event (jti + exp); the event intake admits it
// only from an authority's own identity (spiffe://<td>/zone/<z>/authority of a
// zone that has an authority) and hands it here.
//
// Bounded three ways:
//   - a jti is 1..64 printable ASCII characters without quotes or backslashes
//     (the authority's are 43); a longer one is refused (it would swell every bundle);
//   - an entry lives until the token's exp (+ the gateways' leeway), clamped to
//     now + the zone's accessTokenTtl + leeway: no token of that zone can live
//     longer, so a far-future exp cannot pin an entry; an exp already past is
//     refused as useless;
//   - at most MAX_REVOKED_TOKENS entries: beyond, the ones that expire soonest
//     are dropped first (counted), 1% at a time so that a flood into a full
//     list sorts it once per thousand reports, not once per report.
// Kept in <stateDir>/control/revoked-tokens.json (0600, written atomically) so a
// restarted control plane publishes the same list.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Clock } from '../../shared/clock.ts';

export const MAX_REVOKED_TOKENS = 100_000;
export const MAX_JTI_LENGTH = 64;
/** Kept past a token's exp by this much: a gateway accepts a token up to its leeway after exp. */
export const REVOKED_GRACE_MS = 60_000;
const JTI = /^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/;

export type RevocationRefusal = 'jti_invalid' | 'exp_missing' | 'exp_past';

export interface RevokedTokenStats {
  /** Entries in force now. */
  size: number;
  added: number;
  /** Reports refused: bad jti, no exp, exp already past. */
  refused: number;
  /** Reports whose exp was beyond what the zone's tokens can live (clamped). */
  clamped: number;
  /** Entries dropped before their time because the list was full. */
  evicted: number;
}

export interface RevokedTokens {
  /**
   * Records a revocation reported by zone `zone`'s authority; returns true when
   * the list changed, a refusal code when the report is unusable.
   */
  add(jti: unknown, exp: unknown, maxLifetimeMs: number): boolean | RevocationRefusal;
  /** When `jti`'s entry ends (ms since the epoch); absent: not listed. */
  until(jti: string): number | undefined;
  /** The ids in force now (unsorted). */
  list(): string[];
  /** When the next entry ends (ms since the epoch); absent: none. */
  nextExpiry(): number | undefined;
  /** Drops the entries that ended; true when any did. */
  sweep(): boolean;
  /** Writes the list to disk when it changed since the last save. */
  save(): void;
  stats(): RevokedTokenStats;
}

export function openRevokedTokens(stateDir: string, clock: Clock, max = MAX_REVOKED_TOKENS): RevokedTokens {
  const file = path.resolve(stateDir, 'control', 'revoked-tokens.json');
  const until = new Map<string, number>();
  const stats = { added: 0, refused: 0, clamped: 0, evicted: 0 };
  let dirty = false;

  // a damaged file is not trusted piecemeal: each entry is checked as a new report would be
  try {
    const raw = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    const now = clock.now();
    if (raw && typeof raw === 'object' && Array.isArray((raw as { tokens?: unknown }).tokens))
      for (const t of (raw as { tokens: unknown[] }).tokens) {
        if (!Array.isArray(t) || typeof t[0] !== 'string' || !JTI.test(t[0]) || typeof t[1] !== 'number' || !Number.isFinite(t[1]) || t[1] <= now) continue;
        // nothing read back outlives a day, whatever the file says
        until.set(t[0], Math.min(t[1], now + 86_400_000));
      }
    trim();
  } catch {
    // absent (first start) or unreadable: an empty list; the authorities' tokens expire within minutes anyway
  }

  function trim(): void {
    if (until.size <= max) return;
    const excess = until.size - Math.floor(max * 0.99);
    const order = [...until.entries()].sort((a, b) => a[1] - b[1]);
    for (let i = 0; i < excess; i++) until.delete(order[i][0]);
    stats.evicted += excess;
    dirty = true;
  }

  return {
    add(jti, exp, maxLifetimeMs) {
      if (typeof jti !== 'string' || !JTI.test(jti)) return (stats.refused++, 'jti_invalid');
      if (typeof exp !== 'number' || !Number.isSafeInteger(exp) || exp <= 0) return (stats.refused++, 'exp_missing');
      const now = clock.now();
      let end = exp * 1000 + REVOKED_GRACE_MS;
      if (end <= now) return (stats.refused++, 'exp_past');
      const ceiling = now + maxLifetimeMs + REVOKED_GRACE_MS;
      if (end > ceiling) {
        stats.clamped++;
        end = ceiling;
      }
      const before = until.get(jti);
      // a second report never shortens an entry
      if (before !== undefined && before >= end) return false;
      until.set(jti, end);
      if (before === undefined) stats.added++;
      dirty = true;
      trim();
      return until.has(jti);
    },
    until(jti) {
      const end = until.get(jti);
      return end !== undefined && end > clock.now() ? end : undefined;
    },
    list() {
      const now = clock.now();
      const out: string[] = [];
      for (const [jti, end] of until) if (end > now) out.push(jti);
      return out;
    },
    nextExpiry() {
      let next: number | undefined;
      for (const end of until.values()) if (next === undefined || end < next) next = end;
      return next;
    },
    sweep() {
      const now = clock.now();
      let any = false;
      for (const [jti, end] of until)
        if (end <= now) {
          until.delete(jti);
          any = true;
        }
      if (any) dirty = true;
      return any;
    },
    save() {
      if (!dirty) return;
      mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify({ tokens: [...until.entries()] }), { mode: 0o600 });
      renameSync(tmp, file);
      dirty = false;
    },
    stats: () => ({ size: until.size, ...stats }),
  };
}
