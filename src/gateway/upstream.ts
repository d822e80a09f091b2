// One keep-alive pool and one circuit breaker per upstream service. Retries
// happen only for idempotent requests without a body that never reached the
// upstream (the connection was never made). Only the upstream's own failures
// count against its breaker: a client that broke off or overran its upload is
// neutral, an upstream that resets while the body is still coming is 502
// upstream_reset and counts.
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { ServiceConfig } from '../topology/schema.ts';
import type { Clock } from '../shared/clock.ts';
import { AmbiguousRequest, BadGateway, GatewayTimeout, UpstreamUnavailable, UpstreamReset, GatehouseError } from '../shared/errors.ts';

export type CircuitState = 'closed' | 'open' | 'half_open';

/** Why an upstream request failed, as the breaker counts it. */
export type FailureReason = 'connect_refused' | 'timeout' | 'upstream_reset' | 'bad_gateway';

/** Consecutive-failure circuit breaker with a single trial request when half open. */
export class CircuitBreaker {
  #failures = 0;
  #openUntil = 0;
  #trialInFlight = false;
  readonly threshold: number;
  readonly openMs: number;
  readonly clock: Clock;
  /** The failure that last opened the circuit. */
  reason: FailureReason | undefined;
  /** Called when the circuit opens (with why) or closes again. */
  onChange: ((open: boolean, reason: FailureReason | undefined) => void) | undefined;
  /** Called on every counted outcome (the cluster primary counts them across workers). */
  onOutcome: ((failure: FailureReason | undefined) => void) | undefined;

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
    if (this.#failures > 0) this.onOutcome?.(undefined);
    const wasOpen = this.#failures >= this.threshold;
    this.#failures = 0;
    if (wasOpen) {
      this.reason = undefined;
      this.onChange?.(false, undefined);
    }
  }

  /** Open until `until` because another worker of this gateway saw the upstream fail (no callback: it was told, not the teller). */
  openUntil(until: number, reason: FailureReason): void {
    if (until <= this.clock.now()) return;
    const wasOpen = this.#failures >= this.threshold && this.clock.now() < this.#openUntil;
    this.#failures = Math.max(this.#failures, this.threshold);
    this.#openUntil = Math.max(this.#openUntil, until);
    this.reason = reason;
    if (!wasOpen) this.onChange?.(true, reason);
  }

  /** Closed again because another worker's trial request succeeded. */
  closeNow(): void {
    this.#failures = 0;
    this.reason = undefined;
  }

  /** When an open circuit will let a trial through (ms since the epoch). */
  get openUntilMs(): number {
    return this.#openUntil;
  }

  failure(trial: boolean, reason: FailureReason = 'bad_gateway'): void {
    if (trial) this.#trialInFlight = false;
    this.onOutcome?.(reason);
    this.#failures++;
    if (this.#failures >= this.threshold) {
      this.#openUntil = this.clock.now() + this.openMs;
      this.reason = reason;
      this.onChange?.(true, reason);
    }
  }
}

/** An upload being forwarded: who stopped it decides who is blamed. */
export interface Upload {
  /** The client's whole body was read. */
  ended: boolean;
  /** The client's side stopped the upload (reset, closed, broke the framing). */
  clientAborted: boolean;
  /** The gateway's own refusal of the body (over the limit, longer or shorter than declared). */
  error: GatehouseError | undefined;
  /** Breaks the upstream request off when the client went away. */
  abort: AbortController;
}

export interface UpstreamRequest {
  path: string;
  method: string;
  headers: string[];
  body: Dispatcher.DispatchOptions['body'];
  idempotentRetry: boolean;
  headersTimeout?: number;
  /** The client's upload, when the request streams a body. */
  upload?: Upload;
}

const CONNECT_ERRORS = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'ENOTFOUND', 'UND_ERR_CONNECT_TIMEOUT']);
const TIMEOUT_ERRORS = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);
const RESET_ERRORS = new Set(['ECONNRESET', 'EPIPE', 'UND_ERR_SOCKET', 'UND_ERR_CLOSED']);

/** The upstream's own failure, as a problem and a reason for the breaker. */
function upstreamFailure(error: unknown, uploading: boolean): { problem: GatehouseError; reason: FailureReason } {
  const code = errorCode(error);
  if (TIMEOUT_ERRORS.has(code)) return { problem: GatewayTimeout(error), reason: 'timeout' };
  if (CONNECT_ERRORS.has(code)) return { problem: BadGateway(error), reason: 'connect_refused' };
  if (RESET_ERRORS.has(code) || uploading) {
    // the rest of the client's body is never read: the connection closes after the answer
    const problem = UpstreamReset(error);
    return { problem: uploading ? new GatehouseError(problem.code, problem.message, { cause: error, closeConnection: true }) : problem, reason: 'upstream_reset' };
  }
  return { problem: BadGateway(error), reason: 'bad_gateway' };
}

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
  stream(r: UpstreamRequest, factory: Dispatcher.StreamFactory): Promise<void> {
    let trial: boolean;
    try {
      trial = this.breaker.admit();
    } catch (error) {
      return Promise.reject(error);
    }
    const upload = r.upload;
    const options: Dispatcher.RequestOptions = {
      path: r.path,
      method: r.method as Dispatcher.HttpMethod,
      headers: r.headers,
      body: r.body,
      headersTimeout: r.headersTimeout,
      signal: upload?.abort.signal,
    };
    let answered = false;
    const onHead: Dispatcher.StreamFactory = (data) => {
      answered = true;
      this.breaker.success(trial);
      return factory(data);
    };
    const failure = (error: unknown): unknown => {
      if (answered) return error; // the upstream answered; the failure is the client's or mid-body
      const clientError = upload !== undefined ? (upload.error ?? (upload.clientAborted ? ClientBrokeOff(error) : undefined)) : undefined;
      if (clientError) {
        this.breaker.neutral(trial);
        return clientError;
      }
      const { problem, reason } = upstreamFailure(error, upload !== undefined && !upload.ended);
      this.breaker.failure(trial, reason);
      return problem;
    };
    // one promise per request over undici's callbacks (no promise per attempt, no chain): this runs on every request
    return new Promise((resolve, reject) => {
      const settle = (error: Error | null) => (error === null ? resolve() : reject(failure(error)));
      this.pool.stream(options, onHead, (error) => {
        if (error === null || answered || !r.idempotentRetry || !CONNECT_ERRORS.has(errorCode(error))) settle(error);
        else this.pool.stream(options, onHead, settle);
      });
    });
  }

  /** A WebSocket upgrade through the breaker; an upstream that answers without switching is healthy (502 all the same). */
  async upgrade(r: { path: string; headers: string[] }): Promise<Dispatcher.UpgradeData> {
    const trial = this.breaker.admit();
    try {
      const data = await this.pool.upgrade({ path: r.path, method: 'GET', headers: r.headers, protocol: 'websocket' });
      this.breaker.success(trial);
      return data;
    } catch (error) {
      const code = errorCode(error);
      if (CONNECT_ERRORS.has(code) || TIMEOUT_ERRORS.has(code)) this.breaker.failure(trial, TIMEOUT_ERRORS.has(code) ? 'timeout' : 'connect_refused');
      else this.breaker.neutral(trial);
      throw BadGateway(error, 'The upstream refused the upgrade.');
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

const ClientBrokeOff = (cause: unknown) => AmbiguousRequest('the request body was broken off', cause);

export const isUndiciError = (e: unknown): boolean => e instanceof undiciErrors.UndiciError;
