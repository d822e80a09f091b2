// Polls an authority's revocation feed (GET <issuer>/revocations?since=…,
// client-authenticated; see src/authority/index.ts) and hands every revoked
// `jti` to the token verifier, so a revoked JWT stops passing within one poll
// interval instead of living until it expires. A failed poll keeps the last
// cursor and tries again; it never lets a revoked token back in. Once the feed
// has not been read for longer than the staleness bound, `fresh()` is false
// and the authentication unit refuses that issuer's tokens (fail closed).
import { Agent, request } from 'undici';
import type { Logger } from '../../../shared/logger.ts';
import type { TokenVerifier } from './verify-token.ts';
import type { Clock } from '../../../shared/clock.ts';

export interface RevocationPoller {
  /** Resolves after the next poll (tests, start-up). */
  pollNow(): Promise<void>;
  /** The first poll (provisioning waits for it, so a gateway starts with the current list). */
  first: Promise<void>;
  /** The feed was read successfully within the staleness bound. */
  fresh(): boolean;
  close(): void;
}

const MAX_FEED_BYTES = 4 * 1024 * 1024;

export function pollRevocations(o: {
  feedUrl: string;
  clientId: string;
  clientSecret: string;
  intervalMs: number;
  tokens: TokenVerifier;
  logger: Logger;
  ca?: string;
  /** Longest time since the last successful read before `fresh()` turns false. */
  maxStaleMs: number;
  clock: Clock;
}): RevocationPoller {
  const dispatcher = new Agent({ connect: o.ca ? { ca: o.ca } : {}, headersTimeout: 5_000, bodyTimeout: 5_000 });
  const basic = 'Basic ' + Buffer.from(`${encodeURIComponent(o.clientId)}:${encodeURIComponent(o.clientSecret)}`).toString('base64');
  let since: string | undefined;
  let running: Promise<void> | undefined;
  let lastRead: number | undefined;
  const poll = (): Promise<void> =>
    (running ??= (async () => {
      try {
        const url = since === undefined ? o.feedUrl : `${o.feedUrl}?since=${encodeURIComponent(since)}`;
        const res = await request(url, { dispatcher, headers: { authorization: basic, accept: 'application/json' } });
        if (res.statusCode !== 200) {
          await res.body.dump();
          throw new Error(`the feed answered ${res.statusCode}`);
        }
        const text = await res.body.text();
        if (text.length > MAX_FEED_BYTES) throw new Error('the feed answer is too large');
        const feed = JSON.parse(text) as { jtis?: { jti?: unknown; exp?: unknown }[]; until?: unknown };
        for (const e of feed.jtis ?? [])
          if (typeof e.jti === 'string' && typeof e.exp === 'number') o.tokens.revoke(e.jti, e.exp);
        if (typeof feed.until === 'string' || typeof feed.until === 'number') since = String(feed.until);
        lastRead = o.clock.now();
      } catch (error) {
        o.logger.warn({ feed: o.feedUrl, reason: (error as Error).message }, 'revocation feed poll failed; will retry');
      } finally {
        running = undefined;
      }
    })());
  const first = poll();
  const timer = setInterval(() => void poll(), o.intervalMs);
  timer.unref();
  return {
    pollNow: poll,
    first,
    fresh: () => lastRead !== undefined && o.clock.now() - lastRead <= o.maxStaleMs,
    close() {
      clearInterval(timer);
      void dispatcher.close();
    },
  };
}
