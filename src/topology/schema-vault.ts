// The vault section of gatehouse.yaml: where the vault listens, where it keeps
// its keys and tokens, and which service may use which key for which
// operation. Deny by default: a key absent here cannot be used over the API,
// an operation absent (or an empty list) on a key is refused for every caller.
import { z } from 'zod';

const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const service = z.string().regex(NAME, 'a service name: lowercase letters, digits and -');
const callers = (op: string) =>
  z.array(service).max(256).default([]).describe(`services that may ${op} with this key; absent or empty: nobody`);

export const VaultKeyConfig = z
  .object({
    encrypt: callers('encrypt'),
    decrypt: callers('decrypt'),
    rewrap: callers('rewrap (re-encrypt under the newest version, without seeing the plaintext)'),
    datakey: callers('ask for a data key (envelope encryption of large payloads)'),
    tokenize: callers('tokenize'),
    detokenize: callers('detokenize'),
    tokens: z
      .enum(['opaque', 'card'])
      .default('opaque')
      .describe(
        "token shape: 'opaque' (tok_ + 22 random base64url characters) or 'card' (same length as the card number, its last four digits, passes Luhn, starts with the reserved prefix 0 — never a real card's)",
      ),
    deterministic: z
      .boolean()
      .default(false)
      .describe('the same value always gets the same token (a keyed hash finds it), for joins; absent: a fresh token per call'),
  })
  .strict();

export const VaultConfig = z
  .object({
    listen: z.string().default('127.0.0.1:0').describe('HTTPS (mTLS) listener of the vault API; port 0 picks a free port'),
    storage: z
      .string()
      .regex(/^(sqlite|postgres(ql)?:\/\/.+)$/, "storage is 'sqlite' or a postgres:// URL")
      .default('sqlite')
      .describe("'sqlite' (STATE/vault/vault.sqlite) or a postgres:// URL (optional ?schema=); absent: sqlite"),
    keys: z
      .record(z.string().regex(NAME, 'a key name: lowercase letters, digits and -'), VaultKeyConfig)
      .default({})
      .describe('keys by name, created at the vault start when missing, with their grants; empty: the API refuses everything'),
  })
  .strict();

export type VaultConfig = z.infer<typeof VaultConfig>;
export type VaultKeyConfig = z.infer<typeof VaultKeyConfig>;
