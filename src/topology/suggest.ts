// "Did you mean …?" for unknown keys: walk the zod schema to the object that
// refused the key and pick the closest valid key by edit distance.
import type { z } from 'zod';

type AnyDef = { type: string; [k: string]: unknown };
const defOf = (schema: unknown): AnyDef => (schema as { _zod: { def: AnyDef } })._zod.def;

function unwrap(schema: unknown): unknown {
  let s = schema;
  for (let i = 0; i < 16; i++) {
    const def = defOf(s);
    if (def.type === 'optional' || def.type === 'default' || def.type === 'nullable' || def.type === 'prefault')
      s = def.innerType;
    else if (def.type === 'pipe') s = def.in;
    else return s;
  }
  return s;
}

/** Valid keys of the object schema found at `path`, or [] if it is not an object. */
export function keysAt(root: z.ZodType, path: readonly PropertyKey[]): string[] {
  let candidates: unknown[] = [root];
  for (const part of path) {
    const next: unknown[] = [];
    for (const c of candidates) {
      const s = unwrap(c);
      const def = defOf(s);
      if (def.type === 'object') {
        const child = (def.shape as Record<string, unknown>)[String(part)];
        if (child) next.push(child);
      } else if (def.type === 'array' && typeof part === 'number') next.push(def.element);
      else if (def.type === 'record') next.push(def.valueType);
      else if (def.type === 'union') {
        for (const o of def.options as unknown[]) {
          const od = defOf(unwrap(o));
          if (od.type === 'object' && (od.shape as Record<string, unknown>)[String(part)])
            next.push((od.shape as Record<string, unknown>)[String(part)]);
        }
      }
    }
    candidates = next;
  }
  const keys = new Set<string>();
  for (const c of candidates) {
    const s = unwrap(c);
    const def = defOf(s);
    const objects = def.type === 'union' ? (def.options as unknown[]).map((o) => unwrap(o)) : [s];
    for (const o of objects) {
      const od = defOf(o);
      if (od.type === 'object') for (const k of Object.keys(od.shape as object)) keys.add(k);
    }
  }
  return [...keys];
}

export function editDistance(a: string, b: string): number {
  const al = a.toLowerCase();
  const bl = b.toLowerCase();
  let prev = Array.from({ length: bl.length + 1 }, (_, i) => i);
  for (let i = 1; i <= al.length; i++) {
    const cur = [i];
    for (let j = 1; j <= bl.length; j++)
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (al[i - 1] === bl[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[bl.length];
}

/** The nearest valid key, if it is close enough to be a plausible typo. */
export function nearest(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const v of valid) {
    const d = editDistance(key, v);
    if (d < bestDistance) {
      best = v;
      bestDistance = d;
    }
  }
  return best !== undefined && bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}
