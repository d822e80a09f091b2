// W3C Trace Context (traceparent, tracestate): every hop keeps the trace id
// and names itself as the parent of the next. A malformed or absent
// traceparent starts a new trace; tracestate travels only beside a valid
// traceparent, and bounded (the spec's 512 characters).
import { randomFillSync } from 'node:crypto';

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;
const ZERO_TRACE = '0'.repeat(32);
const ZERO_SPAN = '0'.repeat(16);
// ids come from a pool the CSPRNG fills 4 KiB at a time: one randomFillSync
// per few hundred requests instead of one or two each (a syscall's worth);
// every byte is used once
const POOL = Buffer.allocUnsafe(4096);
let poolOffset = POOL.length;

/** `bytes` fresh random bytes (at most 64), as lowercase hex. */
function randomHex(bytes: number): string {
  if (poolOffset + bytes > POOL.length) {
    randomFillSync(POOL);
    poolOffset = 0;
  }
  return POOL.toString('hex', poolOffset, (poolOffset += bytes));
}

export interface TraceContext {
  traceId: string;
  /** The traceparent to send to the next hop (this hop as its parent). */
  traceparent: string;
  /** Forwarded as received beside a valid traceparent, else undefined. */
  tracestate: string | undefined;
}

function newSpanId(): string {
  for (;;) {
    const id = randomHex(8);
    if (id !== ZERO_SPAN) return id;
  }
}

function newTraceId(): string {
  for (;;) {
    const id = randomHex(16);
    if (id !== ZERO_TRACE) return id;
  }
}

/** A valid version-00 traceparent's parts (ids not all zero), or undefined. */
export function parseTraceparent(incoming: string | undefined): { traceId: string; spanId: string; traceFlags: number } | undefined {
  const m = incoming === undefined ? null : TRACEPARENT.exec(incoming);
  if (!m || m[1] === ZERO_TRACE || m[2] === ZERO_SPAN) return undefined;
  return { traceId: m[1], spanId: m[2], traceFlags: parseInt(m[3], 16) };
}

/** tracestate as received when it is printable and within the spec's 512 characters; else undefined. */
export function boundedTracestate(tracestate: string | undefined): string | undefined {
  return tracestate !== undefined && tracestate.length <= 512 && /^[\x20-\x7e]*$/.test(tracestate) ? tracestate : undefined;
}

/** The context for the next hop, continuing `incoming` when it is a valid version-00 traceparent. */
export function continueTrace(incoming: string | undefined, tracestate?: string): TraceContext {
  const parent = parseTraceparent(incoming);
  if (parent) {
    const flags = incoming!.slice(-2);
    return { traceId: parent.traceId, traceparent: `00-${parent.traceId}-${newSpanId()}-${flags}`, tracestate: boundedTracestate(tracestate) };
  }
  const traceId = newTraceId();
  return { traceId, traceparent: `00-${traceId}-${newSpanId()}-00`, tracestate: undefined };
}
