// How an application behind `gatehouse sidecar` listens: on the Unix socket of
// its run folder (sidecar-paths.ts; the socket 0600 in a 0700 folder, so no
// other user's process can even connect), or on a loopback port when it was
// configured so explicitly (then only the shared secret keeps local processes
// out: use createSidecarGuard). Answers the URL the sidecar takes as
// `--upstream`: `unix:/path/app.sock` or `http://127.0.0.1:P`.
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { Server } from 'node:net';
import { GatehouseError } from '../shared/errors.ts';
import { listen } from '../shared/listen.ts';
import { checkSocketPath, ensurePrivateDir } from './sidecar-paths.ts';

export interface SidecarListenOptions {
  /** The Unix socket to listen on; absent: `host:port` (loopback only). */
  socketPath?: string;
  host?: string;
  port?: number;
}

export async function listenForSidecar(server: Server, o: SidecarListenOptions): Promise<string> {
  if (o.socketPath !== undefined) return `unix:${await listenOnSocket(server, o.socketPath)}`;
  const host = o.host ?? '127.0.0.1';
  if (!['127.0.0.1', '::1', 'localhost'].includes(host))
    throw new GatehouseError('invalid_config', `host: an application behind a sidecar listens on loopback only, not ${JSON.stringify(host)}`);
  return (await listen(server, { host, port: o.port ?? 0 }, 'http')).url;
}

/** Listens on `file` (absolute), 0600, in a 0700 folder of this user; a stale socket left by a crash is replaced. */
export async function listenOnSocket(server: Server, file: string): Promise<string> {
  if (!path.isAbsolute(file)) throw new GatehouseError('invalid_config', `socket: ${JSON.stringify(file)} is not an absolute path`);
  checkSocketPath(file);
  ensurePrivateDir(path.dirname(file));
  try {
    const st = lstatSync(file);
    if (!st.isSocket()) throw new GatehouseError('invalid_config', `socket: ${file} exists and is not a socket; refusing to replace it`);
    unlinkSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error;
  }
  await listen(server, { path: file }, 'http');
  chmodSync(file, 0o600);
  return file;
}
