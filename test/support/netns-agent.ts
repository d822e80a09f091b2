// Runs inside one network namespace of the netns lab (test/support/netns.ts):
// answers on the TCP ports it is told to listen on (each connection gets the
// host's name and is closed), and tries the connections it is told to try.
// Protocol: one JSON command per stdin line, one JSON answer per stdout line.
import { createServer, connect, type Server } from 'node:net';
import { createInterface } from 'node:readline';

const name = process.argv[2] ?? 'host';
const servers: Server[] = [];

type Command =
  | { id: number; listen: { address: string; port: number } }
  | { id: number; connect: { host: string; port: number; timeoutMs: number } };

function answer(id: number, result: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ id, ...result })}\n`);
}

function listenOn(id: number, address: string, port: number): void {
  const server = createServer((socket) => socket.end(`${name}\n`));
  server.once('error', (error: NodeJS.ErrnoException) => answer(id, { ok: false, error: error.code ?? error.message }));
  server.listen({ host: address, port }, () => answer(id, { ok: true }));
  servers.push(server);
}

/** Connected and read the server's name: the flow works both ways. */
function tryConnect(id: number, host: string, port: number, timeoutMs: number): void {
  const socket = connect({ host, port });
  let banner = '';
  const done = (result: Record<string, unknown>) => {
    clearTimeout(timer);
    socket.destroy();
    answer(id, result);
  };
  const timer = setTimeout(() => done({ ok: false, error: 'timeout' }), timeoutMs);
  socket.setEncoding('utf8');
  socket.on('data', (chunk: string) => (banner += chunk));
  socket.on('end', () => done(banner.endsWith('\n') ? { ok: true, peer: banner.trim() } : { ok: false, error: 'no answer' }));
  socket.on('error', (error: NodeJS.ErrnoException) => done({ ok: false, error: error.code ?? error.message }));
}

createInterface({ input: process.stdin }).on('line', (line) => {
  const command = JSON.parse(line) as Command;
  if ('listen' in command) listenOn(command.id, command.listen.address, command.listen.port);
  else tryConnect(command.id, command.connect.host, command.connect.port, command.connect.timeoutMs);
});
process.stdin.on('end', () => {
  for (const s of servers) s.close();
  process.exit(0);
});
process.stdout.write(`${JSON.stringify({ id: 0, ready: name })}\n`);
