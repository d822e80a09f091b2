// Who may do what with a vault key: the topology's `vault.keys.<key>.<op>`.
// Apart from the server, so the vault's door can name them without loading it.
import type { VaultConfig } from '../../topology/schema-vault.ts';

export const VAULT_OPERATIONS = ['encrypt', 'decrypt', 'rewrap', 'datakey', 'tokenize', 'detokenize'] as const;
export type VaultOperation = (typeof VAULT_OPERATIONS)[number];

/** Who may do what: `op` on `key` for these service names (from the topology; absent key or op: nobody). */
export function grantsOf(config: VaultConfig): (key: string, op: VaultOperation, service: string) => boolean {
  const table = new Map<string, Set<string>>();
  for (const [key, k] of Object.entries(config.keys)) for (const op of VAULT_OPERATIONS) table.set(`${key}\0${op}`, new Set(k[op]));
  return (key, op, service) => table.get(`${key}\0${op}`)?.has(service) === true;
}
