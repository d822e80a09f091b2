// `gatehouse ca token --service S`: a one-time join token bound to one service,
// valid for minutes. The token is shown once; the CA keeps only its hash.
import type { Topology } from '../topology/schema.ts';
import { systemClock, type Clock } from '../shared/clock.ts';
import { pkiPaths, ensureDirs } from './lib/files.ts';
import { newTokenSecret, storeToken, sweepTokens } from './lib/join-tokens.ts';
import { gatewaySpiffeId, serviceSpiffeId } from './spiffe-id.ts';
import { GatehouseError } from '../shared/errors.ts';

export interface CreateJoinTokenOptions {
  stateDir: string;
  topology: Topology;
  /** The service the token bootstraps, or `gateway:<zone>` for that zone's gateway. */
  service: string;
  /** Validity in seconds (default 600, at most 3600). */
  ttlSeconds?: number;
  clock?: Clock;
}

export interface JoinToken {
  token: string;
  service: string;
  spiffeId: string;
  expiresAt: Date;
}

export const DEFAULT_TOKEN_TTL_SECONDS = 600;
export const MAX_TOKEN_TTL_SECONDS = 3600;

export function createJoinToken(options: CreateJoinTokenOptions): JoinToken {
  const clock = options.clock ?? systemClock;
  const gatewayZone = /^gateway:(.+)$/.exec(options.service)?.[1];
  const service = gatewayZone === undefined ? options.topology.services[options.service] : undefined;
  if (gatewayZone !== undefined ? !options.topology.zones[gatewayZone]?.gateway : !service)
    throw new GatehouseError('unknown_workload', gatewayZone !== undefined ? `zone ${JSON.stringify(gatewayZone)} has no gateway` : `the topology has no service ${JSON.stringify(options.service)}`);
  const ttl = options.ttlSeconds ?? DEFAULT_TOKEN_TTL_SECONDS;
  if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_TOKEN_TTL_SECONDS)
    throw new GatehouseError('bad_request', `a join token lives from 1 to ${MAX_TOKEN_TTL_SECONDS} seconds`);
  const paths = pkiPaths(options.stateDir);
  ensureDirs(paths);
  const now = clock.now();
  sweepTokens(paths.tokens, now);
  const token = newTokenSecret();
  const spiffeId =
    gatewayZone !== undefined ? gatewaySpiffeId(options.topology.trustDomain, gatewayZone) : serviceSpiffeId(options.topology.trustDomain, service!.zone, options.service);
  const expiresAt = new Date(now + ttl * 1000);
  storeToken(paths.tokens, token, {
    service: options.service,
    spiffeId,
    createdAt: new Date(now).toISOString(),
    expiresAt: expiresAt.toISOString(),
  });
  return { token, service: options.service, spiffeId, expiresAt };
}
