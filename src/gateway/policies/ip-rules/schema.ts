// Config of the ip_rules unit: who may reach a route, by client address.
// A leaf module: gateway/policies/fields.ts (which the topology schema reads)
// imports it, so it must not import topology/schema.ts back.
import { z } from 'zod';
import { Cidr } from '../../../topology/primitives.ts';

export { Cidr };

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
