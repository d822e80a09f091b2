// The vault's ciphertext format, versioned and self-describing (in the manner
// of Tink's key-id prefix and the AWS Encryption SDK's header):
//
//   raw bytes:  'g' 'h' 0x01 | name length (1) | key name (ASCII) | key version (uint32 BE) | nonce (24) | ciphertext ‖ tag (16)
//   string:     gh:v1:<base64url of everything after the first three bytes>
//
// The header (everything before the nonce) is authenticated with the caller's
// context as AAD, so neither the key name, the version nor the context can be
// changed without the decryption failing.
import { GatehouseError } from '../../shared/errors.ts';
import { NONCE_BYTES, TAG_BYTES } from './aead.ts';

export const MAGIC = Buffer.from([0x67, 0x68, 0x01]);
export const STRING_PREFIX = 'gh:v1:';
/** Largest field a single encrypt takes; larger payloads go through a data key (envelope encryption). */
export const MAX_PLAINTEXT_BYTES = 1024 * 1024;
const MAX_NAME = 63;
const MAX_RAW = MAGIC.length + 1 + MAX_NAME + 4 + NONCE_BYTES + MAX_PLAINTEXT_BYTES + TAG_BYTES;
/** Longest string form accepted (longer is refused before decoding). */
export const MAX_STRING_CHARS = STRING_PREFIX.length + Math.ceil(((MAX_RAW - MAGIC.length) * 4) / 3);
const KEY_NAME = /^[a-z][a-z0-9-]{0,62}$/;
const BASE64URL = /^[A-Za-z0-9_-]*$/;

export interface ParsedCiphertext {
  keyName: string;
  version: number;
  /** magic through version: authenticated as part of the AAD */
  header: Buffer;
  /** nonce ‖ ciphertext ‖ tag */
  sealed: Buffer;
}

const malformed = (detail: string) => new GatehouseError('vault_ciphertext_malformed', detail);

/** The header of a ciphertext under `keyName` version `version`. */
export function encodeHeader(keyName: string, version: number): Buffer {
  const name = Buffer.from(keyName, 'latin1');
  const h = Buffer.allocUnsafe(MAGIC.length + 1 + name.length + 4);
  MAGIC.copy(h, 0);
  h[MAGIC.length] = name.length;
  name.copy(h, MAGIC.length + 1);
  h.writeUInt32BE(version, MAGIC.length + 1 + name.length);
  return h;
}

/** Parses raw ciphertext bytes; refuses anything that is not exactly the format. */
export function parseRaw(raw: Buffer): ParsedCiphertext {
  if (raw.length > MAX_RAW) throw malformed('the ciphertext is too large');
  if (raw.length < MAGIC.length + 1 || raw[0] !== MAGIC[0] || raw[1] !== MAGIC[1]) throw malformed('not a vault ciphertext');
  if (raw[2] !== MAGIC[2]) throw malformed('unknown ciphertext format version');
  const n = raw[MAGIC.length];
  const headerLength = MAGIC.length + 1 + n + 4;
  if (n === 0 || n > MAX_NAME || raw.length < headerLength + NONCE_BYTES + TAG_BYTES) throw malformed('the ciphertext is truncated');
  const keyName = raw.toString('latin1', MAGIC.length + 1, MAGIC.length + 1 + n);
  if (!KEY_NAME.test(keyName)) throw malformed('the ciphertext names no valid key');
  const version = raw.readUInt32BE(MAGIC.length + 1 + n);
  if (version === 0) throw malformed('the ciphertext names no valid key version');
  return { keyName, version, header: raw.subarray(0, headerLength), sealed: raw.subarray(headerLength) };
}

/** Parses the `gh:v1:` string form. */
export function parseString(text: string): ParsedCiphertext {
  if (typeof text !== 'string' || !text.startsWith(STRING_PREFIX)) throw malformed('a ciphertext starts with gh:v1:');
  if (text.length > MAX_STRING_CHARS) throw malformed('the ciphertext is too large');
  const body = text.slice(STRING_PREFIX.length);
  if (!BASE64URL.test(body) || body.length % 4 === 1) throw malformed('the ciphertext is not base64url');
  const bytes = Buffer.from(body, 'base64url');
  // a canonical encoding only: no trailing bits that decode to the same bytes
  if (bytes.toString('base64url') !== body) throw malformed('the ciphertext is not canonical base64url');
  return parseRaw(Buffer.concat([MAGIC, bytes]));
}

export const ciphertextString = (raw: Buffer): string => STRING_PREFIX + raw.toString('base64url', MAGIC.length);

/** Either form: a Buffer is raw bytes, a string the gh:v1: form. */
export const parseCiphertext = (c: Buffer | string): ParsedCiphertext => (typeof c === 'string' ? parseString(c) : parseRaw(c));
