// Where the running control plane of a state dir answers its loopback admin
// API (status, publish, quarantines): it writes <stateDir>/control/control.json.
import { readFileSync } from 'node:fs';
import path from 'node:path';

/** The admin URL, or undefined when no control plane runs from `stateDir`. */
export function controlAdminUrl(stateDir: string): string | undefined {
  try {
    const admin = (JSON.parse(readFileSync(path.resolve(stateDir, 'control', 'control.json'), 'utf8')) as { admin?: unknown }).admin;
    return typeof admin === 'string' && /^http:\/\/(127\.0\.0\.1|\[::1\]|localhost):\d+$/.test(admin) ? admin : undefined;
  } catch {
    return undefined;
  }
}
