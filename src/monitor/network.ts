// The network an address belongs to, as the detectors and the gateway's usage
// events count it: a client moving within its /24 (IPv4) or /64 (IPv6) is not
// a new network.
/** The network of an address: IPv4 /24, IPv6 /64 (a client moving within it is not a new network). */
export function networkOf(address: string): string {
  const a = address.replace(/^::ffff:(?=\d+\.)/, '');
  if (/^\d+\.\d+\.\d+\.\d+$/.test(a)) return `${a.split('.').slice(0, 3).join('.')}.0/24`;
  if (a.includes(':')) {
    const [head, tail] = a.split('::');
    const h = head ? head.split(':') : [];
    const t = tail !== undefined ? (tail ? tail.split(':') : []) : [];
    const groups = tail !== undefined ? [...h, ...Array(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t] : h;
    return `${groups
      .slice(0, 4)
      .map((g) => (parseInt(g || '0', 16) || 0).toString(16))
      .join(':')}::/64`;
  }
  return a;
}
