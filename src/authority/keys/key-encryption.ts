// The key-encryption key (KEK) that seals signing keys, TOTP secrets and
// server secrets at rest. It comes from GATEHOUSE_MASTER_KEY (32 bytes as
// base64, base64url or hex) or, absent, from a key file created with mode 0600
// in the zone's state dir. A later issue moves it into the vault.
import { randomBytes, createCipheriv, createDecipheriv } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync, renameSync } from 'node:fs';
import path from 'node:path';

export interface Sealer {
  seal(plaintext: Buffer | string, purpose: string): string;
  open(sealed: string, purpose: string): Buffer;
  /** where the KEK came from, for diagnostics (never the key) */
  source: string;
}

export class KeyEncryptionError extends Error {
  readonly code = 'kek_error';
}

function parseKey(text: string): Buffer | undefined {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return b.length === 32 ? b : undefined;
}

export function loadKeyEncryptionKey(zoneDir: string, env: NodeJS.ProcessEnv = process.env): Sealer {
  let key: Buffer | undefined;
  let source: string;
  if (env.GATEHOUSE_MASTER_KEY) {
    key = parseKey(env.GATEHOUSE_MASTER_KEY);
    if (!key) throw new KeyEncryptionError('GATEHOUSE_MASTER_KEY must be 32 bytes as base64, base64url or hex');
    source = 'GATEHOUSE_MASTER_KEY';
  } else {
    const file = path.join(zoneDir, 'master.key');
    if (!existsSync(file)) {
      const tmp = `${file}.${process.pid}.tmp`;
      writeFileSync(tmp, randomBytes(32).toString('base64url') + '\n', { mode: 0o600, flag: 'wx' });
      renameSync(tmp, file);
    }
    const st = statSync(file);
    if ((st.mode & 0o077) !== 0)
      throw new KeyEncryptionError(`${file} is readable by others (mode ${(st.mode & 0o777).toString(8)}); chmod 600 it`);
    key = parseKey(readFileSync(file, 'utf8'));
    if (!key) throw new KeyEncryptionError(`${file} does not hold a 32-byte key`);
    source = file;
  }
  const kek = key;
  return {
    source,
    seal(plaintext, purpose) {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', kek, iv);
      cipher.setAAD(Buffer.from(`gatehouse-authority:${purpose}`));
      const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
      return ['v1', iv.toString('base64url'), ct.toString('base64url'), cipher.getAuthTag().toString('base64url')].join('.');
    },
    open(sealed, purpose) {
      const [v, iv, ct, tag] = sealed.split('.');
      if (v !== 'v1' || iv === undefined || ct === undefined || tag === undefined)
        throw new KeyEncryptionError('sealed value has an unknown format');
      try {
        const decipher = createDecipheriv('aes-256-gcm', kek, Buffer.from(iv, 'base64url'));
        decipher.setAAD(Buffer.from(`gatehouse-authority:${purpose}`));
        decipher.setAuthTag(Buffer.from(tag, 'base64url'));
        return Buffer.concat([decipher.update(Buffer.from(ct, 'base64url')), decipher.final()]);
      } catch (cause) {
        throw new KeyEncryptionError(
          `cannot decrypt the ${purpose.split(':')[0]} (is the key-encryption key the one that sealed it? source: ${source})`,
          { cause },
        );
      }
    },
  };
}
