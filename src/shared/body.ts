// The one bounded reader of request bodies: every surface that buffers a body
// (gateway contracts, CA, authority forms, sidecar) reads it here, within a
// limit checked before (declared length) and while (streamed bytes) reading.
import type { Readable } from 'node:stream';
import { AmbiguousRequest, GatehouseError, PayloadTooLarge } from './errors.ts';

interface BodySource extends AsyncIterable<unknown> {
  readonly complete?: boolean;
  readonly headers?: Record<string, string | string[] | undefined>;
}

/**
 * The whole body within `limit` bytes: 413 when the declared or the streamed
 * length is over it, 400 `ambiguous_request` when the client broke it off.
 */
export async function readBody(req: BodySource | Readable, limit: number): Promise<Buffer> {
  const declared = (req as BodySource).headers?.['content-length'];
  if (typeof declared === 'string' && Number(declared) > limit) throw PayloadTooLarge(limit);
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of req as AsyncIterable<Buffer | string>) {
      const b = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      total += b.length;
      if (total > limit) throw PayloadTooLarge(limit);
      chunks.push(b);
    }
  } catch (error) {
    if (error instanceof GatehouseError) throw error;
    // the stream was reset or cut before its end: the client's doing
    throw AmbiguousRequest('the request body was broken off', error);
  }
  if ((req as BodySource).complete === false) throw AmbiguousRequest('the request body was broken off');
  return Buffer.concat(chunks, total);
}
