// Client addresses as every enforcement point compares them: IPv4-mapped IPv6
// folded to IPv4, CIDR lists compiled once into a BlockList.
import { BlockList, isIP } from 'node:net';

/** IPv4-mapped IPv6 (::ffff:1.2.3.4) is the IPv4 address it carries. */
export function normaliseAddress(address: string | undefined): string {
  if (address === undefined) return '';
  if (address.startsWith('::ffff:') && isIP(address.slice(7)) === 4) return address.slice(7);
  return address;
}

export function compileCidrs(cidrs: readonly string[]): (address: string) => boolean {
  if (cidrs.length === 0) return () => false;
  const list = new BlockList();
  for (const c of cidrs) {
    const [addr, bits] = c.split('/');
    const family = isIP(addr) === 6 ? 'ipv6' : 'ipv4';
    const mapped = family === 'ipv6' && addr.toLowerCase().startsWith('::ffff:') && isIP(addr.slice(7)) === 4;
    if (mapped) list.addSubnet(addr.slice(7), bits === undefined ? 32 : Math.max(0, Number(bits) - 96), 'ipv4');
    else if (bits === undefined) list.addAddress(addr, family);
    else list.addSubnet(addr, Number(bits), family);
  }
  return (address) => {
    const family = isIP(address);
    return family !== 0 && list.check(address, family === 6 ? 'ipv6' : 'ipv4');
  };
}
