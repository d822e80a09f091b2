// The sidecar's shared secret with its application: random, per sidecar
// process, published in a 0600 file (the current one first, then the previous
// one) and rotated. A new secret is written `graceMs` before the sidecar sends
// it, and the previous one stays in the file, so the application never sees a
// secret it cannot find.
import { randomBytes } from 'node:crypto';
import { renameSync, rmSync, writeFileSync } from 'node:fs';

export const SIDECAR_SECRET_HEADER = 'x-gatehouse-sidecar';

export interface SecretRotation {
  /** The secret the sidecar sends now. */
  current(): string;
  close(): void;
}

const fresh = () => randomBytes(32).toString('base64url');

function publish(file: string, secrets: string[]): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, secrets.join('\n') + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

export function rotateSecret(file: string, options: { rotateMs?: number; graceMs?: number } = {}): SecretRotation {
  const rotateMs = options.rotateMs ?? 15 * 60_000;
  const graceMs = options.graceMs ?? Math.min(5_000, Math.floor(rotateMs / 4));
  if (!(rotateMs > graceMs) || !(graceMs >= 0)) throw new Error('rotateMs must exceed graceMs, and graceMs be ≥ 0');
  let current = fresh();
  publish(file, [current]);
  let switching: NodeJS.Timeout | undefined;
  const timer = setInterval(() => {
    const next = fresh();
    publish(file, [next, current]);
    switching = setTimeout(() => (current = next), graceMs);
    switching.unref();
  }, rotateMs);
  timer.unref();
  return {
    current: () => current,
    close() {
      clearInterval(timer);
      if (switching) clearTimeout(switching);
      rmSync(file, { force: true });
    },
  };
}
