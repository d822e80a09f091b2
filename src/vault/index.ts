// The vault (issue 14). Public API: the key ring and token store in process,
// the mTLS service, the SDK client for services, and the ciphertext format.
export { openVault, type Vault, type VaultKeyInfo, type OpenVaultOptions, type TokenFormat } from './open-vault.ts';
export { parseCiphertext, STRING_PREFIX, MAX_PLAINTEXT_BYTES, type ParsedCiphertext } from './lib/ciphertext.ts';
export { loadKms, openMasterKey, parseMasterKey, localKms, transitKms, MasterKeyError, type Kms, type OpenMasterKeyOptions } from './lib/master-key.ts';
export { luhnValid, isCardNumber, isCardToken, CARD_TOKEN_PREFIX } from './lib/card-token.ts';
export { startVaultServer, grantsOf, VAULT_OPERATIONS, type StartVaultServerOptions, type VaultServer, type VaultOperation } from './start-vault-server.ts';
export { createVaultClient, VaultRequestError, type VaultClient, type VaultClientOptions, type FieldSpec } from './create-vault-client.ts';
export { encryptStream, decryptStream, type DataKeySource } from './encrypt-stream.ts';
