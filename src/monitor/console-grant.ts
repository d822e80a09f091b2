// The console's sign-in client at its zone's authority. The authority of the
// zone named by `monitor.console.zone` registers a first-party authorization-
// code client `gatehouse-console` whose redirect URI is the running console's
// callback (read from <stateDir>/control/control.json), and writes its secret
// here (owner-only), where the control plane reads it when an operator signs
// in — the way federation-seed.ts hands a zone its sign-in client.
import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export const CONSOLE_CLIENT_ID = 'gatehouse-console';
export const CONSOLE_CALLBACK = '/callback';

export interface ConsoleGrant {
  zone: string;
  issuer: string;
  client_id: string;
  client_secret: string;
  redirect_uri: string;
}

export const consoleGrantFile = (stateDir: string) => path.resolve(stateDir, 'control', 'console-client.json');

export function readConsoleGrant(stateDir: string): ConsoleGrant | undefined {
  try {
    const v = JSON.parse(readFileSync(consoleGrantFile(stateDir), 'utf8')) as ConsoleGrant;
    return ['zone', 'issuer', 'client_id', 'client_secret', 'redirect_uri'].every((k) => typeof (v as unknown as Record<string, unknown>)[k] === 'string') ? v : undefined;
  } catch {
    return undefined;
  }
}

export function writeConsoleGrant(stateDir: string, grant: ConsoleGrant): void {
  const file = consoleGrantFile(stateDir);
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(grant) + '\n', { mode: 0o600 });
  renameSync(tmp, file);
}

/** The console URL the running control plane wrote in control.json, or undefined. */
export function runningConsoleUrl(stateDir: string): string | undefined {
  try {
    const c = (JSON.parse(readFileSync(path.resolve(stateDir, 'control', 'control.json'), 'utf8')) as { console?: unknown }).console;
    return typeof c === 'string' && /^https?:\/\/[^/?#\s]+$/.test(c) ? c : undefined;
  } catch {
    return undefined;
  }
}
