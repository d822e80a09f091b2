// Envelope encryption of streams (files, uploads, backups): a fresh data key
// from the vault (datakey), the payload through libsodium's
// crypto_secretstream (XChaCha20-Poly1305, 64 KiB chunks, the last one tagged
// FINAL so truncation is detected), the data key stored beside it only
// encrypted. Works with the in-process vault or the SDK client.
//
//   'g' 'h' 's' 0x01 | wrapped key length (uint32 BE) | wrapped key (gh:v1: text) | secretstream header (24)
//   then frames: length (uint32 BE) | chunk ciphertext (chunk + 17)
import { Transform, type TransformCallback } from 'node:stream';
import sodium from 'sodium-native';
import { GatehouseError } from '../shared/errors.ts';

/** What both the in-process vault and the SDK client offer. */
export interface DataKeySource {
  datakey(key: string, context: string): Promise<{ plaintext: Buffer; ciphertext: string }>;
  decrypt(key: string, ciphertext: string, context: string): Promise<Buffer>;
}

const MAGIC = Buffer.from([0x67, 0x68, 0x73, 0x01]);
const CHUNK = 64 * 1024;
const HEADER = sodium.crypto_secretstream_xchacha20poly1305_HEADERBYTES;
const ABYTES = sodium.crypto_secretstream_xchacha20poly1305_ABYTES;
const MAX_WRAPPED = 4096;

const malformed = (detail: string) => new GatehouseError('vault_ciphertext_malformed', detail);

const u32 = (n: number) => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n);
  return b;
};

/** A Transform that encrypts what is written to it; `context` binds the data key (e.g. `invoices/<id>`). */
export function encryptStream(vault: DataKeySource, key: string, context: string): Transform {
  const state = Buffer.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES);
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let started: Promise<void> | undefined;
  const frame = (self: Transform, chunk: Buffer, tag: number) => {
    const c = Buffer.allocUnsafe(chunk.length + ABYTES);
    sodium.crypto_secretstream_xchacha20poly1305_push(state, c, chunk, null, tag);
    self.push(Buffer.concat([u32(c.length), c]));
  };
  const start = (self: Transform) =>
    (started ??= vault.datakey(key, context).then((dk) => {
      const header = Buffer.allocUnsafe(HEADER);
      sodium.crypto_secretstream_xchacha20poly1305_init_push(state, header, dk.plaintext);
      dk.plaintext.fill(0);
      const wrapped = Buffer.from(dk.ciphertext, 'utf8');
      self.push(Buffer.concat([MAGIC, u32(wrapped.length), wrapped, header]));
    }));
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      start(this).then(() => {
        pending.push(chunk);
        pendingBytes += chunk.length;
        if (pendingBytes >= CHUNK) {
          let all = Buffer.concat(pending, pendingBytes);
          while (all.length >= CHUNK) {
            frame(this, all.subarray(0, CHUNK), sodium.crypto_secretstream_xchacha20poly1305_TAG_MESSAGE);
            all = all.subarray(CHUNK);
          }
          pending = [all];
          pendingBytes = all.length;
        }
        done();
      }, done);
    },
    flush(done: TransformCallback) {
      start(this).then(() => {
        frame(this, Buffer.concat(pending, pendingBytes), sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL);
        done();
      }, done);
    },
  });
}

/** A Transform that decrypts what encryptStream wrote; refuses tampered, reordered, truncated or extended streams. */
export function decryptStream(vault: DataKeySource, key: string, context: string): Transform {
  const state = Buffer.alloc(sodium.crypto_secretstream_xchacha20poly1305_STATEBYTES);
  let buf: Buffer = Buffer.alloc(0);
  let ready = false;
  let ended = false;
  const tag = Buffer.alloc(1);
  const step = async (self: Transform): Promise<void> => {
    if (!ready) {
      if (buf.length < 8) return;
      if (!buf.subarray(0, 4).equals(MAGIC)) throw malformed('not a vault stream');
      const n = buf.readUInt32BE(4);
      if (n === 0 || n > MAX_WRAPPED) throw malformed('the stream header is malformed');
      if (buf.length < 8 + n + HEADER) return;
      const dataKey = await vault.decrypt(key, buf.toString('utf8', 8, 8 + n), context);
      sodium.crypto_secretstream_xchacha20poly1305_init_pull(state, buf.subarray(8 + n, 8 + n + HEADER), dataKey);
      dataKey.fill(0);
      buf = buf.subarray(8 + n + HEADER);
      ready = true;
    }
    while (buf.length >= 4) {
      const n = buf.readUInt32BE(0);
      if (n < ABYTES || n > CHUNK + ABYTES) throw malformed('a stream frame is malformed');
      if (buf.length < 4 + n) return;
      if (ended) throw malformed('data after the end of the stream');
      const m = Buffer.allocUnsafe(n - ABYTES);
      try {
        sodium.crypto_secretstream_xchacha20poly1305_pull(state, m, tag, buf.subarray(4, 4 + n), null);
      } catch {
        throw new GatehouseError('vault_decrypt_failed', 'a stream frame does not decrypt');
      }
      if (tag[0] === sodium.crypto_secretstream_xchacha20poly1305_TAG_FINAL) ended = true;
      self.push(m);
      buf = buf.subarray(4 + n);
    }
  };
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      step(this).then(() => done(), done);
    },
    flush(done: TransformCallback) {
      if (!ended || buf.length > 0) return done(malformed('the stream is truncated'));
      done();
    },
  });
}
