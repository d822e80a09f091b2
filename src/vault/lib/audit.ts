// The vault's audit trail: one JSON line per operation — who (the caller's
// SPIFFE ID, or `operator` for the CLI), what (operation, key, how many
// fields), the outcome and its code. Never a plaintext, value, token, context
// or key; the line passes the one masker anyway. Appended to
// STATE/vault/audit.log (0600) by the service and the CLI alike.
import { appendFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { maskText } from '../../shared/mask.ts';

export interface VaultAuditEntry {
  caller: string;
  op: string;
  key?: string;
  /** fields in the request (a batch counts each) */
  items?: number;
  /** fields refused inside an allowed batch */
  failed?: number;
  outcome: 'ok' | 'refused' | 'error';
  code?: string;
  request_id?: string;
}

export type VaultAudit = (entry: VaultAuditEntry) => void;

export function createVaultAudit(stateDir: string, now: () => number = Date.now): VaultAudit {
  const dir = path.resolve(stateDir, 'vault');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, 'audit.log');
  return (entry) => {
    const line = maskText(JSON.stringify({ time: new Date(now()).toISOString(), ...entry }));
    appendFileSync(file, line + '\n', { mode: 0o600 });
  };
}
