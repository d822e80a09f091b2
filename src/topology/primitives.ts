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


/** The widest block a zone's ingress may admit, per address family. */
const WIDEST_INGRESS = { 4: 8, 6: 32 } as const;

/**
 * What is wrong with a CIDR as an ingress source (firewall rule, gateway
 * check), or undefined: it must be an address or block, no wider than /8
 * (IPv4) or /32 (IPv6), written as its network address (no host bits).
 */
export function ingressCidrProblem(cidr: string): string | undefined {
  const [address, bits, ...rest] = cidr.split('/');
  const family = isIP(address) as 0 | 4 | 6;
  const max = family === 4 ? 32 : 128;
  if (family === 0 || rest.length > 0 || (bits !== undefined && (!/^\d{1,3}$/.test(bits) || Number(bits) > max)))
    return `${JSON.stringify(cidr)} is not an IP address or CIDR block`;
  const prefix = bits === undefined ? max : Number(bits);
  if (prefix < WIDEST_INGRESS[family])
    return `${cidr} is wider than /${WIDEST_INGRESS[family]}: an ingress that admits this much is not locked; list the networks that need it`;
  const bytes = addressBytes(address, family);
  for (let bit = prefix; bit < bytes.length * 8; bit++)
    if ((bytes[bit >> 3] >> (7 - (bit & 7))) & 1) return `${cidr} has host bits set: write the network address (ambiguous otherwise)`;
  return undefined;
}

/** The bytes of an IP address (4 for IPv4, 16 for IPv6), through node's own parser. */
export function addressBytes(address: string, family: 4 | 6): number[] {
  if (family === 4) return address.split('.').map(Number);
  const embedded = /(\d+\.\d+\.\d+\.\d+)$/.exec(address);
  let text = address;
  if (embedded) {
    const b = embedded[1].split('.').map(Number);
    text = address.slice(0, -embedded[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = [...h, ...Array(8 - h.length - t.length).fill('0'), ...t].map((w) => parseInt(w, 16));
  return words.flatMap((w) => [w >> 8, w & 0xff]);
}

/** Who may connect to a zone's gateway. */
export const ZoneIngress = z
  .object({
    clientCertificate: z
      .enum(['required', 'optional'])
      .optional()
      .describe(
        "'required': only workloads of the trust domain whose egress names gateway:<zone> complete TLS (checked from the verified SPIFFE ID); 'optional': a certificate is asked for and, when one is presented, held to the same rule; absent: none is asked for",
      ),
    sources: z
      .array(
        z.string().superRefine((v, ctx) => {
          const problem = ingressCidrProblem(v);
          if (problem) ctx.addIssue({ code: 'custom', message: problem });
        }),
      )
      .min(1, 'sources lists at least one network; to admit nobody from outside, remove the gateway')
      .optional()
      .describe('client networks (CIDRs) whose connections the gateway accepts; others are closed before TLS; absent: any address'),
  })
  .strict();
