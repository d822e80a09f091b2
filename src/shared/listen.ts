// The one way a Gatehouse server starts listening: a `host:port` string (as the
// topology writes it), a parsed address, or a Unix socket path; resolves once
// bound, with the URL clients use (port 0 becomes the port the system chose;
// a socket is `unix:<path>`).
import type { AddressInfo } from 'node:net';
import { parseListen } from '../topology/schema.ts';

interface Listenable {
  listen(port: number, host: string, callback: () => void): unknown;
  listen(path: string, callback: () => void): unknown;
  once(event: 'error', listener: (error: Error) => void): unknown;
  removeListener(event: 'error', listener: (error: Error) => void): unknown;
  address(): AddressInfo | string | null;
}

export interface Bound {
  address: AddressInfo;
  /** `scheme://host:port`, IPv6 hosts in brackets. */
  url: string;
}

export function urlOf(scheme: string, a: AddressInfo): string {
  return `${scheme}://${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
}

export function listen(server: Listenable, at: string | { host: string; port: number } | { path: string }, scheme: 'http' | 'https'): Promise<Bound> {
  if (typeof at === 'object' && 'path' in at)
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(at.path, () => {
        server.removeListener('error', reject);
        resolve({ address: { address: at.path, family: 'unix', port: 0 }, url: `unix:${at.path}` });
      });
    });
  const parsed = typeof at === 'string' ? parseListen(at) : at;
  if (typeof parsed === 'string') return Promise.reject(new Error(parsed));
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(parsed.port, parsed.host, () => {
      server.removeListener('error', reject);
      const address = server.address() as AddressInfo;
      resolve({ address, url: urlOf(scheme, address) });
    });
  });
}
