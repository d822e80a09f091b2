// Where a sidecar and its application meet on one machine: a folder owned by
// the service, 0700, under the state dir — `<stateDir>/run/<service>/`:
//
//   app.sock        the application's listener (0600): the sidecar's upstream
//   outbound.sock   the sidecar's outbound listener (0600): the application's way out
//   sidecar.secret  the sidecar's current and previous shared secret (0600),
//                   rotated; the application checks x-gatehouse-sidecar against it
//
// A loopback port instead of app.sock is used only when configured explicitly;
// the shared secret is then what keeps other local processes out.
import { chmodSync, lstatSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { GatehouseError } from '../shared/errors.ts';

export interface SidecarPaths {
  dir: string;
  socket: string;
  outboundSocket: string;
  secretFile: string;
}

/** Longest Unix socket path Linux accepts (sun_path is 108 bytes with the NUL). */
export const MAX_SOCKET_PATH = 107;
const SERVICE = /^[a-z][a-z0-9-]{0,62}$/;

export function sidecarPaths(stateDir: string, service: string): SidecarPaths {
  if (!SERVICE.test(service)) throw new GatehouseError('invalid_config', `service: ${JSON.stringify(service.slice(0, 64))} is not a service name`);
  const dir = path.resolve(stateDir, 'run', service);
  const paths = { dir, socket: path.join(dir, 'app.sock'), outboundSocket: path.join(dir, 'outbound.sock'), secretFile: path.join(dir, 'sidecar.secret') };
  checkSocketPath(paths.outboundSocket, '--state-dir');
  return paths;
}

export function checkSocketPath(file: string, what = 'socket'): void {
  const n = Buffer.byteLength(file);
  if (n > MAX_SOCKET_PATH)
    throw new GatehouseError('invalid_config', `${what}: the Unix socket path ${file} is ${n} bytes; at most ${MAX_SOCKET_PATH} fit — choose a shorter one`);
}

/**
 * Creates `dir` (and its parents) and makes sure it is a real folder of this
 * user, 0700 — never a symlink planted by someone else or a folder others can
 * enter.
 */
export function ensurePrivateDir(dir: string): void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = lstatSync(dir);
  if (!st.isDirectory()) throw new GatehouseError('invalid_config', `${dir} is not a folder (a symlink?); refusing to put a socket there`);
  if (typeof process.getuid === 'function' && st.uid !== process.getuid())
    throw new GatehouseError('invalid_config', `${dir} belongs to uid ${st.uid}, not to this service (uid ${process.getuid()})`);
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
}
