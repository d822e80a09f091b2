// The gateway's policy units. Each unit is a folder under policies/ with the
// same shape: `id`, a zod `schema` (description and default on every field),
// `provision` (once per config load: compile, fetch, build) and `onRequest`,
// which returns a decision and never writes the response — only the pipeline
// does. A unit runs in one of the policy phases of the request path (the whole
// list is in ../phases.ts):
//
//   ip → rate → authenticate → (quarantine) → authorize → cedar → contract
//
// and may also take part in the identity phase (what the upstream is told about
// the caller). Units are registered in registry.ts, never wired by hand. Any unit
// whose config says `shadow: true` logs and counts what it would deny, and lets
// it pass: one mechanism for every unit, run by the pipeline.
import type { z } from 'zod';
import type { IncomingHttpHeaders } from 'node:http';
import type { GatehouseError } from '../../shared/errors.ts';
import type { Clock } from '../../shared/clock.ts';
import type { Logger } from '../../shared/logger.ts';
import type { LoadedTopology } from '../../topology/load.ts';
import type { CompiledRoute } from '../router.ts';

export type Phase = 'ip' | 'rate' | 'authenticate' | 'authorize' | 'cedar' | 'contract';

/** Who is calling, as established by authentication. */
export interface Identity {
  /** 'user' (a token with a user subject), 'client' (a client's own token), 'consumer' (an API key). */
  kind: 'user' | 'client' | 'consumer';
  /** Subject: the user id, the client id or the consumer name. */
  sub: string;
  clientId?: string;
  consumer?: string;
  issuer?: string;
  scopes: ReadonlySet<string>;
  roles: ReadonlySet<string>;
  acr?: string;
  amr: readonly string[];
  /** The credential's id (token `jti`, API key prefix). */
  jti?: string;
  /** Expiry of the credential, seconds since the epoch. */
  exp?: number;
  /** Rate-limit tier (API key consumers). */
  tier?: string;
  /** The raw access token, when it may be forwarded. */
  token?: string;
  /** RFC 8693 actor chain of an exchanged token (`act` claim), passed on as is. */
  act?: Record<string, unknown>;
}

/** One request as the policies see it. The path is the canonical one the router matched. */
export interface Exchange {
  method: string;
  path: string;
  query: string;
  host: string;
  headers: IncomingHttpHeaders;
  clientAddress: string;
  requestId: string;
  zone: string;
  route: CompiledRoute;
  now: number;
  identity?: Identity;
  /** Headers a unit adds for the upstream (flat name, value pairs). */
  upstreamHeaders: string[];
  /** Headers a unit adds to the response (success or refusal). */
  responseHeaders: Record<string, string>;
  /** Called once the response is finished (concurrency slots, counters). */
  onDone: (() => void)[];
  /** The `{name}` parameters of a template route, percent-decoded from the canonical path; {} on other routes. */
  pathParams(): Record<string, string>;
  /** The whole request body, read once within the route's body limit (413 beyond); the upstream then gets these bytes. */
  readBody(): Promise<Buffer>;
  /** Request headers never forwarded on this route (the caller's credentials), set in the identity phase. */
  stripHeaders?: ReadonlySet<string>;
  /** DER of the TLS client certificate of this connection (certificate-bound tokens, RFC 8705); undefined: none. Optional for test doubles. */
  peerCertificate?(): Buffer | undefined;
  /** The URL the client sent this request to, without the query (DPoP `htu`, RFC 9449): <listener scheme>://<Host><path>. Optional for test doubles. */
  requestUrl?(): string;
}

export type Decision = GatehouseError | undefined;

export interface ProvisionContext {
  topology: LoadedTopology;
  zone: string;
  stateDir: string;
  clock: Clock;
  logger: Logger;
  /** Shared resources of this gateway (Redis connections, JWKS caches …), closed with it. */
  shared: SharedResources;
}

export interface SharedResources {
  get<T>(key: string, create: () => T, close?: (value: T) => void | Promise<void>): T;
  close(): Promise<void>;
}

export interface Policy<Config, State> {
  /** lowercase with underscores; the folder is the kebab-case form. */
  id: string;
  /** The phase `onRequest` runs in. */
  phase: Phase;
  /** Validates the unit's part of the topology at provision (errors name the route field). */
  schema: z.ZodType<Config>;
  /** A phase other than `phase` for this config (a limit keyed by the caller runs once the caller is known). */
  phaseFor?(config: Config): Phase;
  provision(config: Config, ctx: ProvisionContext): State | Promise<State>;
  onRequest(exchange: Exchange, state: State): Decision | Promise<Decision>;
  /** Runs in the identity phase, after every check passed: headers the upstream gets about the caller. */
  onIdentity?(exchange: Exchange, state: State): void | Promise<void>;
}

/** A provisioning error about one field of the route (path relative to the route, e.g. ['validate', 'openapi']). */
export class FieldError extends Error {
  readonly field: (string | number)[];
  constructor(field: (string | number)[], message: string) {
    super(message);
    this.field = field;
  }
}

/**
 * Key of the shared set of token ids the control plane revoked (a policy
 * bundle's decisions.revokedTokenIds); the gateway refills it with every bundle.
 */
export const REVOKED_TOKEN_IDS = 'decisions:revokedTokenIds';

export function createSharedResources(): SharedResources {
  const values = new Map<string, { value: unknown; close?: (v: unknown) => void | Promise<void> }>();
  return {
    get<T>(key: string, create: () => T, close?: (value: T) => void | Promise<void>): T {
      let entry = values.get(key);
      if (!entry) {
        entry = { value: create(), close: close as ((v: unknown) => void | Promise<void>) | undefined };
        values.set(key, entry);
      }
      return entry.value as T;
    },
    async close() {
      for (const { value, close } of values.values()) await close?.(value);
      values.clear();
    },
  };
}
