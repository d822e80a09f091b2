// Canonical JSON, the only byte form a bundle is signed and accepted in:
// object keys sorted by UTF-16 code units, no whitespace, strings as
// JSON.stringify writes them (no \u escape but for control characters and lone
// surrogates), numbers only as finite JSON.stringify output, keys whose value
// is undefined left out. A document is canonical when re-serialising its parse
// gives back exactly its bytes: that one comparison refuses reordered keys,
// whitespace, duplicate keys (the parse keeps one), needless escapes, 1.0 for
// 1, a BOM and invalid UTF-8.

export function canonicalJson(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError('canonical JSON has no NaN or Infinity');
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value))
        return `[${value.map((v) => {
          if (v === undefined) throw new TypeError('canonical JSON has no undefined array element');
          return canonicalJson(v);
        }).join(',')}]`;
      const obj = value as Record<string, unknown>;
      const keys = Object.keys(obj).filter((k) => obj[k] !== undefined).sort();
      return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
    }
    default:
      throw new TypeError(`canonical JSON cannot hold a ${typeof value}`);
  }
}

export function canonicalBytes(value: unknown): Uint8Array {
  return new TextEncoder().encode(canonicalJson(value));
}

export type CanonicalParse = { ok: true; value: unknown } | { ok: false; reason: 'utf8' | 'json' | 'not_canonical' };

/** Parses `bytes` and accepts it only when it is exactly the canonical form of its value. */
export function parseCanonical(bytes: Uint8Array): CanonicalParse {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return { ok: false, reason: 'utf8' };
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { ok: false, reason: 'json' };
  }
  if (canonicalJson(value) !== text) return { ok: false, reason: 'not_canonical' };
  return { ok: true, value };
}
