// One keep-alive pool and one circuit breaker per upstream service. Retries
// happen only for idempotent requests without a body that never reached the
// upstream (the connection was never made).
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { ServiceConfig } from '../topology/schema.ts';
import type { Clock } from '../shared/clock.ts';
import { BadGateway, GatewayTimeout, UpstreamUnavailable, GatehouseError } from '../shared/errors.ts';

export type CircuitState = 'closed' | 'open' | 'half_open';

/** Consecutive-failure circuit breaker with a single trial request when half open. */
export class CircuitBreaker {
  #failures = 0;
  #openUntil = 0;
  #trialInFlight = false;
  readonly threshold: number;
  readonly openMs: number;
  readonly clock: Clock;

  constructor(threshold: number, openMs: number, clock: Clock) {
    this.threshold = threshold;
    this.openMs = openMs;
    this.clock = clock;
  }

  get state(): CircuitState {
    if (this.#failures < this.threshold) return 'closed';
    return this.clock.now() < this.#openUntil ? 'open' : 'half_open';
  }

  /** Throws 503 when the circuit refuses the request; returns whether this is the half-open trial. */
  admit(): boolean {
    if (this.#failures < this.threshold) return false;
    const now = this.clock.now();
    if (now < this.#openUntil || this.#trialInFlight)
      throw UpstreamUnavailable(Math.max(1, Math.ceil((this.#openUntil - now) / 1000)));
    this.#trialInFlight = true;
    return true;
  }

  /** An outcome that says nothing about the upstream's health (the client's fault). */
  neutral(trial: boolean): void {
    if (trial) this.#trialInFlight = false;
  }

  success(trial: boolean): void {
    if (trial) this.#trialInFlight = false;
    this.#failures = 0;
  }

  failure(trial: boolean): void {
    if (trial) this.#trialInFlight = false;
    this.#failures++;
    if (this.#failures >= this.threshold) this.#openUntil = this.clock.now() + this.openMs;
  }
}

export interface UpstreamRequest {
  path: string;
  method: string;
  headers: string[];
  body: Dispatcher.DispatchOptions['body'];
  idempotentRetry: boolean;
  headersTimeout?: number;
  /** Aborts the upstream request (the client went away mid-body). */
  signal?: AbortSignal;
  /** The error to answer when a failure was the client's doing (a body over the limit, broken off or malformed); the breaker ignores it. */
  clientFailure?: () => GatehouseError | undefined;
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT']);
const TIMEOUT_ERRORS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

export function errorCode(error: unknown): string {
  let e: unknown = error;
  for (let i = 0; i < 4 && e; i++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string') return code;
    e = (e as { cause?: unknown }).cause;
  }
  return 'unknown';
}

export class Upstream {
  readonly name: string;
  readonly origin: string;
  readonly host: string;
  readonly pool: Pool;
  readonly breaker: CircuitBreaker;
  readonly config: ServiceConfig;

  constructor(name: string, origin: string, config: ServiceConfig, clock: Clock, connect?: Pool.Options['connect']) {
    const url = new URL(origin);
    this.name = name;
    this.origin = url.origin;
    this.host = url.host;
    this.config = config;
    this.pool = new Pool(url.origin, {
      connections: config.connections,
      pipelining: 1,
      keepAliveTimeout: 4_000,
      keepAliveMaxTimeout: 60_000,
      connectTimeout: config.timeouts.connectMs,
      headersTimeout: config.timeouts.headersMs,
      bodyTimeout: config.timeouts.bodyMs,
      maxHeaderSize: 64 * 1024,
      connect,
    });
    this.breaker = new CircuitBreaker(config.circuitBreaker.failures, config.circuitBreaker.openMs, clock);
  }

  /**
   * Send the request and stream the answer into the writable that `factory`
   * returns once the response head arrives. Rejects with GatehouseError
   * (502/503/504) when the upstream fails before or while answering.
   */
  async stream(r: UpstreamRequest, factory: Dispatcher.StreamFactory): Promise<void> {
    const trial = this.breaker.admit();
    const options: Dispatcher.RequestOptions = {
      path: r.path,
      method: r.method as Dispatcher.HttpMethod,
      headers: r.headers,
      body: r.body,
      headersTimeout: r.headersTimeout,
      signal: r.signal,
    };
    let answered = false;
    const onHead: Dispatcher.StreamFactory = (data) => {
      answered = true;
      this.breaker.success(trial);
      return factory(data);
    };
    try {
      try {
        await this.pool.stream(options, onHead);
      } catch (error) {
        if (answered || !r.idempotentRetry || !CONNECT_ERRORS.has(errorCode(error))) throw error;
        await this.pool.stream(options, onHead);
      }
    } catch (error) {
      if (answered) throw error; // the upstream answered; the failure is the client's or mid-body
      const clientError = r.clientFailure?.() ?? (error instanceof GatehouseError ? error : undefined);
      if (clientError) {
        this.breaker.neutral(trial);
        throw clientError;
      }
      this.breaker.failure(trial);
      const code = errorCode(error);
      if (TIMEOUT_ERRORS.has(code)) throw GatewayTimeout(error);
      throw BadGateway(error);
    }
  }

  /** Finish in-flight requests, but give up on them after `graceMs`. */
  async close(graceMs = 5_000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), graceMs)));
    const outcome = await Promise.race([this.pool.close().then(() => 'closed' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late') await this.pool.destroy();
  }

  destroy(): Promise<void> {
    return this.pool.destroy();
  }
}

export const isUndiciError = (e: unknown): boolean => e instanceof undiciErrors.UndiciError;
