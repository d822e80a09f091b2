// A JSON body as the validate unit checks it. The upstream gets the very bytes
// that were checked, so they must mean one thing to every parser that may read
// them (I-JSON, RFC 7493): UTF-8 and nothing else (no other charset, no byte
// order mark, no invalid bytes), no duplicate keys in an object (JSON.parse
// keeps the last, many parsers the first: a schema would check one value and
// the service act on another), no unpaired surrogate escapes (decoded, kept or
// replaced by U+FFFD depending on the parser, so two different keys can
// become one), and nesting bounded.
//
// JSON.parse (native) checks the grammar; one linear pass over the text then
// finds keys, tracking the keys of each open object in a set. Only strings
// holding a backslash are decoded (to compare "a" with "\u0061"). No recursion:
// the open objects and arrays are an explicit stack of at most MAX_DEPTH.
import { isUtf8 } from 'node:buffer';
import { GatehouseError, UnsupportedMediaType, BadRequest } from '../../../shared/errors.ts';
import { clip, fieldOf, unprocessable } from './refusals.ts';

/** Objects and arrays nested deeper than this are refused (422), as Jackson's default. */
export const MAX_DEPTH = 1000;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const COMMA = 0x2c;
const STRUCTURAL = new Uint8Array(CLOSE_OBJECT + 1);
for (const c of [QUOTE, OPEN_OBJECT, CLOSE_OBJECT, OPEN_ARRAY, CLOSE_ARRAY, COMMA]) STRUCTURAL[c] = 1;

/** The parsed body, or why it is refused (415 charset, 400 bytes or syntax, 422 duplicate key, surrogate, depth). */
export function parseStrictJson(raw: Buffer, contentType: string | undefined): { value: unknown } | GatehouseError {
  const charset = declaredCharset(contentType);
  if (charset !== undefined) return UnsupportedMediaType(`JSON bodies are UTF-8 (RFC 8259); charset ${JSON.stringify(clip(charset))} is not taken.`);
  if (raw.length >= 3 && raw[0] === 0xef && raw[1] === 0xbb && raw[2] === 0xbf)
    return BadRequest('The body starts with a byte order mark; a JSON body is UTF-8 without one.', false);
  // JSON text starts with an ASCII character: a NUL among the first two bytes, or a UTF-16 BOM, is UTF-16 or UTF-32 (RFC 4627 §3)
  if ((raw.length >= 2 && (raw[0] === 0 || raw[1] === 0)) || (raw.length >= 2 && ((raw[0] === 0xff && raw[1] === 0xfe) || (raw[0] === 0xfe && raw[1] === 0xff))))
    return BadRequest('The body is not UTF-8 (it looks like UTF-16 or UTF-32).', false);
  if (!isUtf8(raw)) return BadRequest('The body is not valid UTF-8.', false);
  const text = raw.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return BadRequest('The body is not valid JSON.', false);
  }
  return scan(text) ?? { value };
}

/** A charset parameter other than UTF-8 (the first such), or undefined. */
function declaredCharset(contentType: string | undefined): string | undefined {
  if (contentType === undefined) return undefined;
  const params = contentType.split(';');
  for (let i = 1; i < params.length; i++) {
    const eq = params[i].indexOf('=');
    if (eq === -1 || params[i].slice(0, eq).trim().toLowerCase() !== 'charset') continue;
    let value = params[i].slice(eq + 1).trim();
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
    const name = value.toLowerCase();
    if (name !== 'utf-8' && name !== 'utf8') return value;
  }
  return undefined;
}

/** Keys of one object are compared in a list up to this many, then in a set. */
const LIST_KEYS = 16;

/**
 * The first duplicate key, unpaired surrogate or too deep nesting in `text`,
 * which JSON.parse has accepted (so the grammar is known to hold).
 */
function scan(text: string): GatehouseError | undefined {
  // per open container (by depth): an object?, its keys so far (a list reused
  // from object to object at that depth, then a set), the current key or index
  const isObject: boolean[] = [];
  const lists: string[][] = [];
  const sets: (Set<string> | undefined)[] = [];
  const keyAt: string[] = [];
  const indexAt: number[] = [];
  let depth = 0;
  let expectKey = false;
  // position of the next backslash at or after the scan (n: none); it only moves forward
  let backslash = text.indexOf('\\');
  if (backslash === -1) backslash = text.length;
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    // digits, letters of literals, whitespace, colons: nothing to do
    if (c > CLOSE_OBJECT || STRUCTURAL[c] === 0) {
      i++;
      continue;
    }
    if (c === QUOTE) {
      // the closing quote: the next one not escaped (JSON.parse has seen it close)
      let j = text.indexOf('"', i + 1);
      let s: string | undefined;
      if (backslash < j) {
        j = i + 1;
        for (;;) {
          const d = text.charCodeAt(j);
          if (d === QUOTE) break;
          j += d === BACKSLASH ? 2 : 1;
        }
        backslash = text.indexOf('\\', j);
        if (backslash === -1) backslash = n;
        s = unescape(text, i + 1, j);
        if (!s.isWellFormed())
          // a key: where its object is; a value: where the value is
          return expectKey
            ? unprocessable(fieldOf('body', pathTo(depth - 1, isObject, keyAt, indexAt)), 'a key holds an unpaired surrogate (\\ud800-\\udfff escape)')
            : unprocessable(fieldOf('body', pathTo(depth, isObject, keyAt, indexAt)), 'holds an unpaired surrogate (\\ud800-\\udfff escape)');
      }
      if (expectKey) {
        const key = s ?? text.slice(i + 1, j);
        const top = depth - 1;
        const set = sets[top];
        if (set !== undefined) {
          if (set.has(key)) return duplicate(pathTo(top, isObject, keyAt, indexAt), key);
          set.add(key);
        } else {
          const list = lists[top];
          for (let k = 0; k < list.length; k++) if (list[k] === key) return duplicate(pathTo(top, isObject, keyAt, indexAt), key);
          list.push(key);
          if (list.length > LIST_KEYS) sets[top] = new Set(list);
        }
        keyAt[top] = key;
        expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (depth === MAX_DEPTH) return unprocessable('body', `nests deeper than ${MAX_DEPTH} objects and arrays`);
      const object = c === OPEN_OBJECT;
      isObject[depth] = object;
      if (object) {
        if (lists[depth] === undefined) lists[depth] = [];
        else lists[depth].length = 0;
        sets[depth] = undefined;
      } else indexAt[depth] = 0;
      depth++;
      expectKey = object;
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      depth--;
      expectKey = false;
    } else if (c === COMMA) {
      if (isObject[depth - 1]) expectKey = true;
      else indexAt[depth - 1]++;
    }
    i++;
  }
  return undefined;
}

/** The keys and indexes down to (not including) container `upTo`. */
function pathTo(upTo: number, isObject: boolean[], keyAt: string[], indexAt: number[]): (string | number)[] {
  const path: (string | number)[] = [];
  for (let k = 0; k < upTo; k++) path.push(isObject[k] ? keyAt[k] : indexAt[k]);
  return path;
}

const SIMPLE_ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };

/** The text of a JSON string between its quotes, escapes decoded (the grammar is known to hold). */
function unescape(text: string, start: number, end: number): string {
  let out = '';
  let from = start;
  let k = text.indexOf('\\', start);
  while (k !== -1 && k < end) {
    out += text.slice(from, k);
    const e = text[k + 1];
    if (e === 'u') {
      out += String.fromCharCode(parseInt(text.slice(k + 2, k + 6), 16));
      from = k + 6;
    } else {
      out += SIMPLE_ESCAPES[e];
      from = k + 2;
    }
    k = text.indexOf('\\', from);
  }
  return out + text.slice(from, end);
}

function duplicate(path: (string | number)[], key: string): GatehouseError {
  // the path of the object holding the key; the key itself shown as JSON, clipped
  return unprocessable(fieldOf('body', path), `duplicate key ${JSON.stringify(clip(key))}`);
}
