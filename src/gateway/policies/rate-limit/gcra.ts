// GCRA (the generic cell rate algorithm): a token bucket kept as one number,
// the theoretical arrival time (TAT) of the next request at the sustained rate.
// A request is allowed when, after adding its emission interval T, the TAT is
// at most τ = burst × T ahead of now; so `burst` requests fit at once and then
// one every T. A refusal leaves the TAT unchanged: being refused costs nothing,
// and hammering a closed bucket does not push the reopening further away.
//
// Times are whole microseconds held in doubles (exact up to 2^53 µs, year
// 2255), so sums of T never drift and `burst` requests at one instant are
// exactly `burst`, whatever the rate. The Redis script is the same arithmetic.

export interface GcraLimit {
  /** T: microseconds between requests at the sustained rate (window / limit, rounded, at least 1). */
  emissionUs: number;
  /** τ: how far ahead of now the TAT may run (burst × T). */
  toleranceUs: number;
}

/** Written in place by gcra(), so a decision allocates nothing. */
export interface GcraResult {
  allowed: boolean;
  /** The TAT to store (unchanged when refused). */
  tat: number;
  /** Requests that would still be allowed right now, after this one. */
  remaining: number;
  /** When refused: microseconds until this request would be allowed; 0 otherwise. */
  retryAfterUs: number;
  /** Microseconds until the bucket is full again (the whole burst available). */
  resetUs: number;
}

export const newGcraResult = (): GcraResult => ({ allowed: false, tat: 0, remaining: 0, retryAfterUs: 0, resetUs: 0 });

/** The parameters of `limit` requests per `windowSeconds`, `burst` at once. */
export function gcraLimit(limit: number, windowSeconds: number, burst: number): GcraLimit {
  const emissionUs = Math.max(1, Math.round((windowSeconds * 1_000_000) / limit));
  return { emissionUs, toleranceUs: burst * emissionUs };
}

/** One decision for a request costing one unit, given the stored TAT (0 when none) and now, in µs. */
export function gcra(storedTat: number, nowUs: number, limit: GcraLimit, out: GcraResult): GcraResult {
  const tat = storedTat > nowUs ? storedTat : nowUs;
  const next = tat + limit.emissionUs;
  const allowAt = next - limit.toleranceUs;
  if (nowUs < allowAt) {
    out.allowed = false;
    out.tat = tat;
    out.remaining = 0;
    out.retryAfterUs = allowAt - nowUs;
    out.resetUs = tat - nowUs;
  } else {
    out.allowed = true;
    out.tat = next;
    out.remaining = Math.floor((nowUs + limit.toleranceUs - next) / limit.emissionUs);
    out.retryAfterUs = 0;
    out.resetUs = next - nowUs;
  }
  return out;
}

/** Requests left right now without spending one (for a refusal that is not the bucket's). */
export function gcraRemaining(storedTat: number, nowUs: number, limit: GcraLimit): number {
  const tat = storedTat > nowUs ? storedTat : nowUs;
  return Math.max(0, Math.floor((nowUs + limit.toleranceUs - tat) / limit.emissionUs));
}
