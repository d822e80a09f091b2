// Config of the ip_rules unit: who may reach a route, by client address.
// A leaf module (zod and node:net only): topology/schema.ts imports it, so it
// must not import topology/schema.ts back (an import cycle fails at load).
import { z } from 'zod';
import { isIP } from 'node:net';

/**
 * A CIDR block or a single address (IPv4 or IPv6); the same rule as
 * topology/schema.ts `Cidr`, which can re-export this one.
 */
export const Cidr = z.string().superRefine((value, ctx) => {
  const [addr, bits, ...rest] = value.split('/');
  const family = isIP(addr);
  const max = family === 4 ? 32 : 128;
  if (rest.length > 0 || family === 0 || (bits !== undefined && !/^\d{1,3}$/.test(bits)) || Number(bits) > max)
    ctx.addIssue({ code: 'custom', message: `expected an IP address or CIDR block, got ${JSON.stringify(value)}` });
});

export const IpRulesConfig = z
  .object({
    allow: z
      .array(Cidr)
      .optional()
      .describe(
        'addresses or CIDR blocks (IPv4, IPv6; ::ffff:a.b.c.d is the IPv4 address) let in; ' +
          'absent: every address that is not denied; empty: nobody',
      ),
    deny: z
      .array(Cidr)
      .default([])
      .describe('addresses or CIDR blocks refused with 403; deny wins over allow; empty: nobody is denied by this list'),
    shadow: z
      .boolean()
      .default(false)
      .describe('log and count what would be refused, and let it pass (the policy chain reads it); default false'),
  })
  .strict()
  .describe(
    'refuse or admit by client address (the socket peer, or the right-most X-Forwarded-For entry that is not a ' +
      'trusted proxy); an address that cannot be parsed is refused',
  );

export type IpRulesConfig = z.infer<typeof IpRulesConfig>;
