// What a bucket counts: the key parts of a request, compiled once per config.
// One part is used as is; several are length-prefixed, so no choice of values
// (an identity may hold any character) can make two different tuples collide.
import { isIP } from 'node:net';
import type { Exchange, Identity } from '../policy.ts';
import { normaliseAddress } from '../../../shared/address.ts';
import type { KeyPart } from './schema.ts';

type PartOf = (exchange: Exchange) => string | undefined;

/**
 * The client address as a bucket key: IPv4 as is, IPv6 canonicalised and cut
 * to its first `bits` (one subscriber holds a whole /64, so counting single
 * IPv6 addresses lets one client spray 2^64 buckets). Not an IP: '?', one
 * shared bucket, never a fresh one per spelling.
 */
export function addressKey(address: string, ipv6PrefixBits: number): string {
  const a = normaliseAddress(address);
  const family = isIP(a);
  if (family === 4) return a;
  if (family === 0) return '?';
  const groups = parseIpv6(a);
  if (groups === undefined) return '?';
  let out = '';
  for (let i = 0; i < 8; i++) {
    const keep = Math.max(0, Math.min(16, ipv6PrefixBits - i * 16));
    const g = keep === 0 ? 0 : groups[i] & (0xffff << (16 - keep)) & 0xffff;
    out += (i === 0 ? '' : ':') + g.toString(16);
  }
  return ipv6PrefixBits === 128 ? out : `${out}/${ipv6PrefixBits}`;
}

/** Eight 16-bit groups of an IPv6 address (already checked by isIP); zone id dropped. */
function parseIpv6(address: string): number[] | undefined {
  let a = address;
  const zone = a.indexOf('%');
  if (zone !== -1) a = a.slice(0, zone);
  let tail: number[] = [];
  const lastColon = a.lastIndexOf(':');
  if (a.indexOf('.', lastColon) !== -1) {
    // an embedded IPv4 tail (::1.2.3.4, 64:ff9b::1.2.3.4) is the last two groups
    const v4 = a.slice(lastColon + 1).split('.').map(Number);
    tail = [(v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]];
    a = a.slice(0, lastColon + 1);
    if (!a.endsWith('::')) a = a.slice(0, -1);
  }
  const hex = (s: string) => (s === '' ? [] : s.split(':').map((g) => parseInt(g, 16)));
  const dbl = a.indexOf('::');
  let groups: number[];
  if (dbl === -1) groups = [...hex(a), ...tail];
  else {
    const head = hex(a.slice(0, dbl));
    const rest = [...hex(a.slice(dbl + 2)), ...tail];
    groups = [...head, ...new Array<number>(8 - head.length - rest.length).fill(0), ...rest];
  }
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : undefined;
}

const withIssuer = (id: Identity, value: string) => (id.issuer === undefined ? value : `${id.issuer} ${value}`);

function consumerOf(id: Identity | undefined): string | undefined {
  if (id === undefined) return undefined;
  return id.consumer ?? (id.kind === 'consumer' ? id.sub : undefined);
}
function userOf(id: Identity | undefined): string | undefined {
  return id?.kind === 'user' ? withIssuer(id, id.sub) : undefined;
}
function clientOf(id: Identity | undefined): string | undefined {
  if (id === undefined) return undefined;
  const client = id.clientId ?? (id.kind === 'client' ? id.sub : undefined);
  return client === undefined ? undefined : withIssuer(id, client);
}
function subjectOf(id: Identity | undefined): string | undefined {
  return id === undefined ? undefined : `${id.kind} ${withIssuer(id, id.sub)}`;
}

/**
 * The bucket key of a request, or undefined when an identity part is missing
 * (and `missingIdentity` is 'deny'). With 'address', a missing identity part is
 * replaced by the client address, marked so it never equals an identity value.
 */
export function compileBucketKey(
  parts: readonly KeyPart[],
  options: { ipv6PrefixBits: number; missingIdentity: 'deny' | 'address' },
): (exchange: Exchange) => string | undefined {
  const bits = options.ipv6PrefixBits;
  const fallback = options.missingIdentity === 'address';
  const address: PartOf = (x) => addressKey(x.clientAddress, bits);
  const identity =
    (read: (id: Identity | undefined) => string | undefined): PartOf =>
    (x) => {
      const v = read(x.identity);
      if (v !== undefined || !fallback) return v;
      return `address ${addressKey(x.clientAddress, bits)}`;
    };
  const getters: PartOf[] = parts.map((p) => {
    switch (p) {
      case 'address':
        return address;
      case 'route':
        return (x) => x.route.name;
      case 'consumer':
        return identity(consumerOf);
      case 'user':
        return identity(userOf);
      case 'client':
        return identity(clientOf);
      case 'subject':
        return identity(subjectOf);
    }
  });
  if (getters.length === 1) return getters[0];
  return (x) => {
    let key = '';
    for (let i = 0; i < getters.length; i++) {
      const v = getters[i](x);
      if (v === undefined) return undefined;
      key += `${v.length}:${v}`;
    }
    return key;
  };
}
