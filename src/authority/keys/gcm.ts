// AES-256-GCM (node:crypto) for the authority's sealed values:
// `<version>.<iv>.<ciphertext>.<tag>`, base64url, the purpose bound as AAD.
import { randomBytes, createCipheriv, createDecipheriv } from 'node:crypto';

/** AES-256-GCM under `key`, the purpose bound as AAD; `version` is the format prefix. */
export function gcmSeal(key: Buffer, version: 'v1' | 'v2', plaintext: Buffer | string, purpose: string): string {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(`gatehouse-authority:${purpose}`));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return [version, iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
}

/** The plaintext, or undefined when `sealed` is not `version` under `key` for `purpose`. */
export function gcmOpen(key: Buffer, version: 'v1' | 'v2', sealed: string, purpose: string): Buffer | undefined {
  const [v, iv, ct, tag, extra] = sealed.split('.');
  if (v !== version || iv === undefined || ct === undefined || tag === undefined || extra !== undefined) return undefined;
  try {
    const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(iv, 'base64url'));
    decipher.setAAD(Buffer.from(`gatehouse-authority:${purpose}`));
    decipher.setAuthTag(Buffer.from(tag, 'base64url'));
    return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]);
  } catch {
    return undefined;
  }
}
