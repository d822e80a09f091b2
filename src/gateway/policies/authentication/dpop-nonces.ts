// The DPoP nonces a zone's gateway issues and accepts (RFC 9449 §9,
// authentication.dpopNonce): an HMAC of the current minute under a secret.
// Replicas of one zone's gateway behind one address must share that secret,
// or a nonce one replica issued is stale at the next, and a client is sent
// use_dpop_nonce round after round. They share it through the Redis that
// keeps their DPoP replay cache (dpopReplayCache in index.ts): the first
// replica stores a random secret there (SET NX, key <prefix>dpop:nonce-secret,
// no expiry), every replica reads it once. Without that Redis, each process
// has a secret of its own (one replica: nothing to share).
// When Redis cannot be read at provision, the process starts with a secret of
// its own (logged) and keeps trying every RETRY_MS; once it reads the shared
// one it switches to it (a nonce it issued before is then stale: that client
// retries once).
// The secret lets whoever reads the Redis predict nonces, which only means
// proofs could be made ahead of time by someone who also holds the DPoP key;
// the replay cache in the same Redis is as sensitive.
import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { ProvisionContext } from '../policy.ts';
import { dpopNonces, type DpopNonces } from '../../../shared/sender-constraint.ts';

export interface NonceRedis {
  client: Redis;
  prefix: string;
  /** host:port, for logs (never credentials) */
  where: string;
}

const RETRY_MS = 5_000;

/** The zone's nonces: shared through `redis` when given, else this process's own. */
export async function zoneDpopNonces(ctx: ProvisionContext, redis: NonceRedis | undefined): Promise<DpopNonces> {
  const now = () => ctx.clock.now();
  if (!redis) return ctx.shared.get('auth:dpop-nonces', () => dpopNonces(randomBytes(32), now));
  const shared = ctx.shared.get(
    `auth:dpop-nonces:redis:${redis.where}:${redis.prefix}`,
    () => {
      const key = `${redis.prefix}dpop:nonce-secret`;
      let inner = dpopNonces(randomBytes(32), now);
      let timer: NodeJS.Timeout | undefined;
      const read = async (): Promise<boolean> => {
        try {
          await redis.client.set(key, randomBytes(32).toString('base64url'), 'NX');
          const secret = Buffer.from((await redis.client.get(key)) ?? '', 'base64url');
          if (secret.length < 32) throw new Error('the shared DPoP nonce secret in Redis is malformed');
          inner = dpopNonces(secret, now);
          return true;
        } catch (error) {
          ctx.logger.warn({ err: error, redis: redis.where }, 'DPoP nonces: the shared secret cannot be read from Redis; this gateway issues nonces of its own meanwhile');
          return false;
        }
      };
      const nonces: DpopNonces = { current: () => inner.current(), valid: (nonce) => inner.valid(nonce) };
      const first = read().then((ok) => {
        if (ok) return;
        timer = setInterval(() => {
          void read().then((done) => {
            if (done) {
              clearInterval(timer);
              ctx.logger.info({ redis: redis.where }, 'DPoP nonces: the shared secret is read from Redis now');
            }
          });
        }, RETRY_MS);
        timer.unref();
      });
      return { nonces, first, stop: () => clearInterval(timer) };
    },
    (x) => x.stop(),
  );
  await shared.first;
  return shared.nonces;
}
