// How the validate unit names what it refuses: `<where>/<JSON Pointer>: reason`
// (body/items/0/sku: must be integer). Names and paths come from the client, so
// both are bounded: each segment at most MAX_ECHO characters, a path at most
// HEAD_SEGMENTS + TAIL_SEGMENTS segments (the middle written as …).
import { GatehouseError } from '../../../shared/errors.ts';

/** Names the client chose are echoed in problems, never more than this many characters of them. */
export const MAX_ECHO = 64;
const HEAD_SEGMENTS = 6;
const TAIL_SEGMENTS = 4;

export const clip = (s: string): string => (s.length > MAX_ECHO ? `${s.slice(0, MAX_ECHO)}…` : s);

/** `where` and the path below it, as a JSON Pointer (~ and / escaped), each segment clipped, long paths shortened. */
export function fieldOf(where: string, segments: readonly (string | number)[]): string {
  const segment = (s: string | number) => `/${clip(String(s).replace(/~/g, '~0').replace(/\//g, '~1'))}`;
  if (segments.length <= HEAD_SEGMENTS + TAIL_SEGMENTS) return where + segments.map(segment).join('');
  return `${where}${segments.slice(0, HEAD_SEGMENTS).map(segment).join('')}/…${segments.slice(-TAIL_SEGMENTS).map(segment).join('')}`;
}

/** 422 naming the field (`field` is kept on the error for shadow-mode logs). */
export function unprocessable(field: string, reason: string): GatehouseError {
  return Object.assign(new GatehouseError('unprocessable', `${field}: ${reason}`), { field });
}
