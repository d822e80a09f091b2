// Request-target hygiene. The path is decoded exactly once into one canonical
// form that the router, every policy and the upstream see. Anything that two
// parsers could read two ways is refused rather than guessed.
import { AmbiguousPath, UnsupportedTarget } from '../shared/errors.ts';

export interface CanonicalTarget {
  /** Canonical path: dot segments removed, duplicate slashes merged, unreserved characters decoded. */
  path: string;
  /** Raw query string without '?', validated but not rewritten; '' when absent. */
  query: string;
  /** The path holds ';' (matrix parameters); routes refuse it unless they allow it. */
  hasParameters: boolean;
}

// pchar (RFC 3986) minus ';' (handled separately) plus '/': already canonical when
// there is no '%', no '//' and no dot segment.
const SIMPLE_PATH = /^\/[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/;
const PATH_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,=:@/;%]*$/;
const QUERY_CHARS = /^[A-Za-z0-9\-._~!$&'()*+,=:@/?;%[\]]*$/;
const HEX = /^[0-9A-Fa-f]{2}$/;
const utf8 = new TextDecoder('utf-8', { fatal: true });

function isUnreserved(c: number): boolean {
  return (
    (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f || c === 0x7e
  );
}

/**
 * Parse an origin-form request target (`/path?query`). Throws a GatehouseError
 * (400, connection closed) for anything else or anything ambiguous.
 */
export function canonicalTarget(target: string): CanonicalTarget {
  if (target.length === 0 || target.charCodeAt(0) !== 0x2f /* / */) {
    if (target === '*') throw UnsupportedTarget("asterisk-form ('*') targets are not proxied");
    throw UnsupportedTarget('only origin-form targets (starting with /) are accepted');
  }
  if (target.startsWith('//')) throw AmbiguousPath('the path starts with //, which reads as an authority');
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const query = q === -1 ? '' : target.slice(q + 1);
  if (query !== '') checkQuery(query);

  if (SIMPLE_PATH.test(rawPath) && !rawPath.includes('//') && !rawPath.includes('/.')) {
    return { path: rawPath, query, hasParameters: false };
  }
  if (rawPath.includes('#') || query.includes('#')) throw AmbiguousPath('fragments are not sent to servers');
  if (!PATH_CHARS.test(rawPath)) {
    if (rawPath.includes('\\')) throw AmbiguousPath('backslash in the path');
    throw AmbiguousPath('the path holds characters that must be percent-encoded');
  }
  return { path: normalisePath(decodeOnce(rawPath)), query, hasParameters: rawPath.includes(';') };
}

/** Decode %XX once; keep reserved and non-ASCII bytes encoded (uppercase hex). */
function decodeOnce(raw: string): string {
  if (!raw.includes('%')) return raw;
  let out = '';
  let i = 0;
  while (i < raw.length) {
    const ch = raw.charCodeAt(i);
    if (ch !== 0x25) {
      out += raw[i];
      i++;
      continue;
    }
    // a run of percent-encoded bytes: checked as UTF-8 together
    const bytes: number[] = [];
    while (i < raw.length && raw.charCodeAt(i) === 0x25) {
      const hex = raw.slice(i + 1, i + 3);
      if (!HEX.test(hex)) throw AmbiguousPath('invalid percent-encoding in the path');
      const b = parseInt(hex, 16);
      if (b === 0x2f) throw AmbiguousPath('encoded slash (%2F) in the path');
      if (b === 0x5c) throw AmbiguousPath('encoded backslash (%5C) in the path');
      if (b === 0x2e) throw AmbiguousPath('encoded dot (%2E) in the path');
      if (b === 0x25) throw AmbiguousPath('double percent-encoding (%25) in the path');
      if (b === 0x00) throw AmbiguousPath('encoded NUL (%00) in the path');
      if (b < 0x20 || b === 0x7f) throw AmbiguousPath('encoded control character in the path');
      if (b === 0x3b) throw AmbiguousPath('encoded semicolon (%3B) in the path');
      bytes.push(b);
      i += 3;
    }
    try {
      utf8.decode(Uint8Array.from(bytes));
    } catch {
      throw AmbiguousPath('percent-encoded bytes are not valid UTF-8');
    }
    for (const b of bytes) {
      out += isUnreserved(b) ? String.fromCharCode(b) : '%' + b.toString(16).toUpperCase().padStart(2, '0');
    }
  }
  return out;
}

/** Merge duplicate slashes and remove dot segments (RFC 3986 §5.2.4); above the root is refused. */
function normalisePath(p: string): string {
  const trailing = p.endsWith('/') || p.endsWith('/.') || p.endsWith('/..');
  const out: string[] = [];
  for (const segment of p.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (out.length === 0) throw AmbiguousPath('the path climbs above the root');
      out.pop();
      continue;
    }
    // '..;x' and '.;x' are dot segments to servlet containers: never let them through
    const bare = segment.split(';', 1)[0];
    if (bare === '.' || bare === '..') throw AmbiguousPath('dot segment with parameters in the path');
    out.push(segment);
  }
  const joined = '/' + out.join('/');
  return trailing && joined !== '/' ? joined + '/' : joined;
}

function checkQuery(query: string): void {
  if (!QUERY_CHARS.test(query)) {
    if (query.includes('#')) throw AmbiguousPath('fragments are not sent to servers');
    throw AmbiguousPath('the query holds characters that must be percent-encoded');
  }
  for (let i = query.indexOf('%'); i !== -1; i = query.indexOf('%', i + 1)) {
    if (!HEX.test(query.slice(i + 1, i + 3))) throw AmbiguousPath('invalid percent-encoding in the query');
  }
}
