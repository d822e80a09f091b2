// The vault (issue 14). Public API: the key ring and token store in process,
// the mTLS service, the SDK client for services, and the ciphertext format.
// The key ring (its SQL store) and the server load when first called, so a
// component that needs only the master key or the client does not load them.
import type { OpenVaultOptions, Vault } from './open-vault.ts';
import type { StartVaultServerOptions, VaultServer } from './start-vault-server.ts';

export type { Vault, VaultKeyInfo, OpenVaultOptions, TokenFormat } from './open-vault.ts';
export { parseCiphertext, STRING_PREFIX, MAX_PLAINTEXT_BYTES, type ParsedCiphertext } from './lib/ciphertext.ts';
export { loadKms, openMasterKey, parseMasterKey, localKms, transitKms, MasterKeyError, type Kms, type OpenMasterKeyOptions } from './lib/master-key.ts';
export { luhnValid, isCardNumber, isCardToken, CARD_TOKEN_PREFIX } from './lib/card-token.ts';
export type { StartVaultServerOptions, VaultServer } from './start-vault-server.ts';
export { grantsOf, VAULT_OPERATIONS, type VaultOperation } from './lib/grants.ts';
export { createVaultClient, VaultRequestError, type VaultClient, type VaultClientOptions, type FieldSpec } from './create-vault-client.ts';
export { encryptStream, decryptStream, type DataKeySource } from './encrypt-stream.ts';

export async function openVault(options: OpenVaultOptions): Promise<Vault> {
  return (await import('./open-vault.ts')).openVault(options);
}

/** `gatehouse vault`: the mTLS service. */
export async function startVaultServer(options: StartVaultServerOptions): Promise<VaultServer> {
  return (await import('./start-vault-server.ts')).startVaultServer(options);
}
