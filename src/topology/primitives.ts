// Small schema pieces that policy schemas share with the topology schema
// (kept apart so the two can import them without a cycle).
import { z } from 'zod';
import { isIP } from 'node:net';

/** A CIDR block or a single address (IPv4 or IPv6). */
export const Cidr = z.string().superRefine((value, ctx) => {
  const [addr, bits, ...rest] = value.split('/');
  const family = isIP(addr);
  const max = family === 4 ? 32 : 128;
  if (rest.length > 0 || family === 0 || (bits !== undefined && !/^\d{1,3}$/.test(bits)) || Number(bits) > max)
    ctx.addIssue({ code: 'custom', message: `expected an IP address or CIDR block, got ${JSON.stringify(value)}` });
});

