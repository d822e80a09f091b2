// Test fixture: a topology in a temp dir, a recording upstream and a gateway.
import http from 'node:http';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { startGateway, type RunningGateway, type GatewayOptions } from '../../src/gateway/server.ts';
import { createLogger, createAccessLogger } from '../../src/shared/logger.ts';

export interface Seen {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  rawHeaders: string[];
  bodyBytes: number;
}

export interface Upstream {
  url: string;
  port: number;
  seen: Seen[];
  server: http.Server;
  close(): Promise<void>;
}

/** An upstream that records what it receives; `handler` may answer instead of the default JSON echo. */
export async function startUpstream(
  handler?: (req: http.IncomingMessage, res: http.ServerResponse, body: Buffer) => void,
): Promise<Upstream> {
  const seen: Seen[] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, rawHeaders: req.rawHeaders, bodyBytes: body.length });
      if (handler) return handler(req, res, body);
      const text = JSON.stringify({ method: req.method, path: req.url, headers: req.headers, bodyBytes: body.length });
      res.writeHead(200, { 'content-type': 'application/json', server: 'UpstreamServer/1.0', 'x-powered-by': 'Express' });
      res.end(text);
    });
    req.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    seen,
    server,
    close: () =>
      new Promise((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

export function tempDir(prefix = 'gh-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

export interface Fixture {
  dir: string;
  file: string;
  gateway: RunningGateway;
  ca: string;
  logs: Record<string, unknown>[];
  write(yaml: string): void;
  close(): Promise<void>;
}

/** Start a gateway for zone `edge` of `yaml` (and `files` beside it); access-log lines are collected in `logs`. */
export async function startFixture(yaml: string, extra: Partial<GatewayOptions> = {}, files: Record<string, string> = {}): Promise<Fixture> {
  const dir = tempDir();
  const file = path.join(dir, 'gatehouse.yaml');
  writeFileSync(file, yaml);
  // files the topology refers to (schemas, OpenAPI documents), beside it
  for (const [name, text] of Object.entries(files)) writeFileSync(path.join(dir, name), text);
  const logs: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line));
      cb();
    },
  });
  const quiet = createLogger({ name: 'test', level: 'silent' });
  const gateway = await startGateway({
    config: file,
    zone: 'edge',
    stateDir: dir,
    logger: quiet,
    // the access logger the gateway makes for itself (no pino redaction: the pipeline censors), into the test's sink
    accessLog: createAccessLogger('edge', sink as never, 0),
    ...extra,
  });
  return {
    dir,
    file,
    gateway,
    get ca() {
      return readFileSync(path.join(dir, 'tls', 'dev-ca.pem'), 'utf8');
    },
    logs,
    write: (y: string) => writeFileSync(file, y),
    close: () => gateway.close(),
  };
}
