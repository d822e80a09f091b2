// A raw node:tls client for hostile-peer tests: any certificate, any bytes.
import tls from 'node:tls';

export interface RawAnswer {
  /** HTTP status, or undefined when the server closed without answering. */
  status?: number;
  head: string;
  body: string;
  tlsError?: string;
}

export function rawHttps(
  url: string,
  opts: { cert?: string; key?: string; ca: string; requests: string[] | string; timeoutMs?: number; between?: (answered: number) => void },
): Promise<RawAnswer[]> {
  const u = new URL(url);
  const requests = Array.isArray(opts.requests) ? opts.requests : [opts.requests];
  return new Promise((resolve) => {
    const answers: RawAnswer[] = [];
    let buf = '';
    let settled = false;
    const socket = tls.connect({
      host: u.hostname,
      port: Number(u.port),
      ca: opts.ca,
      cert: opts.cert,
      key: opts.key,
      checkServerIdentity: () => undefined,
    });
    const finish = (tlsError?: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      parse(true);
      if (answers.length === 0) answers.push({ head: '', body: '', tlsError });
      socket.destroy();
      resolve(answers);
    };
    const timer = setTimeout(() => finish('timeout'), opts.timeoutMs ?? 5000);
    let next = 0;
    const sendNext = () => {
      if (next > 0) opts.between?.(next);
      if (next < requests.length) socket.write(requests[next++]);
      else finish();
    };
    // Parse responses with Content-Length (what the mesh sends).
    const parse = (final = false) => {
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end === -1) return;
        const head = buf.slice(0, end);
        const len = Number(/\r\ncontent-length: *(\d+)/i.exec(head)?.[1] ?? (final ? buf.length - end - 4 : NaN));
        if (Number.isNaN(len) || buf.length < end + 4 + len) return;
        answers.push({ status: Number(head.split(' ')[1]), head, body: buf.slice(end + 4, end + 4 + len) });
        buf = buf.slice(end + 4 + len);
        if (!final) sendNext();
      }
    };
    socket.setEncoding('utf8');
    socket.on('secureConnect', sendNext);
    socket.on('data', (c: string) => {
      buf += c;
      parse();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => finish(e.code ?? e.message));
    socket.on('close', () => finish());
  });
}

export function get(path: string, headers: Record<string, string> = {}, method = 'GET'): string {
  const h = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  return `${method} ${path} HTTP/1.1\r\nhost: svc\r\n${h}${method === 'POST' || method === 'PUT' ? 'content-length: 0\r\n' : ''}\r\n`;
}
