// What a probe run works on (the plan), what it finds (results) and the
// bounds it keeps (the context every check receives).

export type Severity = 'high' | 'medium' | 'low';
/**
 * pass: the target behaved as expected; fail: a finding; skip: not applicable here; error: the probe could
 * not tell (refused, stalled, budget); accepted: a medium or low finding the deployment accepts (--accept), with why.
 */
export type Status = 'pass' | 'fail' | 'skip' | 'error' | 'accepted';

export interface CheckResult {
  /** Stable id, e.g. `h1.smuggling.cl-te`; never reused for another meaning. */
  id: string;
  title: string;
  severity: Severity;
  status: Status;
  /** What was probed: a URL, `host:port`, or `<zone> gateway <url>`. */
  target: string;
  expected: string;
  observed: string;
  /** Why and until when the finding is accepted (status accepted). */
  acceptance?: { reason: string; expires: string };
}

export interface RouteInfo {
  name: string;
  /** A concrete path that this route matches ({id} templates filled, prefixes extended). */
  path: string;
  methods: string[];
  /** false only for `auth: anonymous`. */
  protected: boolean;
  /** The route takes JWTs (auth jwt, or accept lists jwt). */
  jwt: boolean;
  /** A user who passed MFA is needed: a client's genuine token is refused here. */
  mfa?: boolean;
  /** Scopes a token needs (the first alternative of an any-rule), when declared. */
  scopes: string[];
  /** Only sender-constrained JWTs (the route's or its zone's senderConstrained: required). */
  senderConstrained?: boolean;
  /** A declared rate limit keyed on the client address, when any. */
  rateLimit?: { limit: number; burst: number };
}

export interface ZoneTarget {
  name: string;
  /** The zone's JWTs must be sender-constrained (authentication.senderConstrained: required): genuine tokens are DPoP-bound. */
  senderConstrained?: boolean;
  gateway?: string;
  authority?: string;
  /** Routes in match order; empty when only a URL was given (--target). */
  routes: RouteInfo[];
}

export interface DevClient {
  client_id: string;
  client_secret?: string;
  grant_types: string[];
  scope: string;
}

export interface ProbePlan {
  trustDomain?: string;
  /** PEM: the CA that gateways' and authorities' certificates chain to. */
  caPem?: string;
  /** PEM: the trust domain's bundle that workload (service) certificates chain to. */
  trustPem?: string;
  zones: ZoneTarget[];
  /** Services reached directly (mTLS): they must refuse a caller without a certificate. */
  services: { name: string; zone: string; url: string }[];
  /** Every other declared URL (CA, control plane, admin listeners, console, …): TLS posture, and declared ports for the scan. */
  declared: { label: string; url: string }[];
  /**
   * A workload certificate (PEM) presented to gateways that require one: the probe then plays a
   * compromised workload of the trust domain. Absent: such a gateway is only checked from outside.
   */
  clientCert?: { cert: string; key: string };
  /** Only one URL was given (--target): nothing else is known to be declared, so undeclared ports cannot be told apart. */
  partial?: boolean;
  /** Dev mode: a confidential client-credentials client per zone, to get a genuine token. */
  clients: Record<string, DevClient | undefined>;
}

export interface ProbeLimits {
  /** Most requests (connections, handshakes, HTTP requests) the whole run makes. */
  maxRequests: number;
  /** Wall-clock bound of the whole run, in ms. */
  maxMs: number;
  /** Bound of one request/handshake, in ms. */
  timeoutMs: number;
  /** Most bytes read from one response. */
  maxResponseBytes: number;
  /** Ports either side of each declared port that the scan tries. */
  scanWindow: number;
}

export const DEFAULT_LIMITS: ProbeLimits = {
  maxRequests: 2_000,
  maxMs: 180_000,
  timeoutMs: 5_000,
  maxResponseBytes: 256 * 1024,
  scanWindow: 8,
};

export interface ProbeReport {
  tool: { name: 'gatehouse probe'; version: string };
  startedAt: string;
  durationMs: number;
  requests: number;
  targets: string[];
  /** fail, high, medium and low count findings not accepted; accepted counts the accepted ones. */
  summary: { pass: number; fail: number; skip: number; error: number; accepted: number; high: number; medium: number; low: number };
  results: CheckResult[];
}
