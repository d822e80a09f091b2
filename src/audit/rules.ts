// The posture rules of `gatehouse audit`, one per practice, as data: a stable
// id (never reused: tools key their suppressions on it), a name, the default
// severity, the practice it serves and how to fix what it finds.

export type Severity = 'error' | 'warning' | 'note';

export interface Rule {
  id: string;
  name: string;
  severity: Severity;
  /** What the rule checks, in one sentence. */
  summary: string;
  /** The practice (seed) it serves. */
  practice: string;
  fix: string;
}

const rule = (id: string, name: string, severity: Severity, summary: string, practice: string, fix: string): Rule => ({ id, name, severity, summary, practice, fix });

export const RULES = [
  rule('GH001', 'anonymous-route-without-rate-limit', 'error', 'An anonymous route has no rate limit (its own or its zone\'s).', 'rate limiting as a DoS defence (004 §8)', 'add policies.rate_limit to the route or to its zone'),
  rule('GH002', 'plaintext-listener', 'warning', 'A gateway serves plain HTTP.', 'HTTPS for all service communication (000)', 'remove plaintext: true unless a TLS-terminating load balancer is the only client'),
  rule('GH003', 'plaintext-upstream', 'error', 'A service is reached over plain HTTP.', 'HTTPS for all service communication (000), mTLS (004 §5)', 'serve it with createService or put `sidecar: true` in front of it (mTLS), or give an https:// upstream'),
  rule('GH004', 'upstream-outside-mesh', 'warning', 'A service is reached at an upstream without the mesh: no workload identity, no allow edges.', 'zero trust between services (003)', 'run it with a run: module (createService) or behind `sidecar: true`, and declare who may call it'),
  rule('GH005', 'routed-service-without-allow', 'error', 'The gateway routes to a service that declares no allow edge.', 'least privilege: every service says who may call it (000)', 'add an allow edge for caller gateway with the methods and paths the routes send'),
  rule('GH006', 'zone-without-authority', 'warning', 'A zone has no authority of its own.', 'one authentication service per zone (000)', 'add zones.<zone>.authority (or document the outside issuer it trusts)'),
  rule('GH007', 'write-without-mfa', 'warning', 'A route of a public zone takes write methods from users who need not have passed MFA.', 'strong access controls, MFA (004 §4)', "set auth.mfa: required on the route (or limit it to GET/HEAD)"),
  rule('GH008', 'anonymous-write', 'error', 'An anonymous route takes write methods.', 'strong access controls (004 §4)', 'require a credential on the route, or limit it to GET/HEAD'),
  rule('GH009', 'token-lifetime-over-15-minutes', 'error', 'An authority issues access tokens that live longer than 15 minutes.', 'short-lived JWTs (002)', 'set accessTokenTtl to 900 or less (default 300)'),
  rule('GH010', 'egress-to-anywhere', 'error', 'A service may call out to any address.', 'lock down outbound ports (000)', 'list the endpoints it needs as host:port'),
  rule('GH011', 'private-zone-ingress-not-locked', 'error', "A private zone's gateway admits any client on the network.", 'a private zone accepts traffic only from where its callers run (000)', 'add zones.<zone>.ingress with clientCertificate: required and/or sources: [CIDRs]'),
  rule('GH012', 'route-auth-shadow', 'warning', 'A route only logs the requests its authentication or authorization would refuse.', 'bake in security from day 1 (004 §1)', 'remove auth.shadow once the route is tried'),
  rule('GH013', 'revocation-feed-fails-open', 'warning', 'Revoked tokens pass while the revocation feed is unreachable.', 'deny by default', "set revocationFeed.whenStale: refuse"),
  rule('GH014', 'api-key-in-query', 'warning', 'A route accepts its API key in the query string (kept in logs, proxies and browser history).', 'protect credentials (002)', 'send API keys in the header only: remove apiKeyQuery'),
  rule('GH015', 'protected-route-under-anonymous-prefix', 'warning', 'A route that needs a credential lies under an anonymous prefix route: the same path in other letters (/Admin) or, for an exact route, with a trailing slash (/admin/) matches the anonymous route instead.', 'deny by default; bake in security from day 1 (004 §1)', 'give the prefix route a credential too, or narrow it; and make sure the service matches paths exactly and case-sensitively'),
  rule('GH100', 'invalid-config', 'error', 'The topology does not load (gatehouse validate names the same problem).', 'contracts checked before deploy', 'fix the field as the message says'),
  rule('GH101', 'unknown-egress-target', 'error', 'An egress entry names no service of the topology, or a zone without a gateway.', 'contracts checked before deploy', 'fix the name (services, gateway:<zone>) or remove the entry'),
  rule('GH102', 'unknown-caller', 'error', 'An allow edge names a caller that is no service of the topology.', 'contracts checked before deploy', 'fix the caller name (a service, or gateway)'),
  rule('GH103', 'cross-zone-without-gateway', 'error', 'A service calls, or is called by, a service of another zone directly.', 'zones reached only through their gateway (000)', "call the other zone through its gateway: egress gateway:<zone>, and a route there"),
  rule('GH104', 'route-method-refused', 'error', "A route passes methods its service's allow edges refuse from the gateway (a 403 behind the gateway).", 'contracts checked before deploy', 'list the methods in the edge, or drop them from the route'),
  rule('GH105', 'sidecar-with-upstream', 'error', 'A service has both sidecar: true and an upstream (the sidecar fronts a run: module).', 'contracts checked before deploy', 'remove upstream (the sidecar finds the application) or sidecar'),
  rule('GH106', 'run-module-missing', 'error', 'A run: module does not exist.', 'contracts checked before deploy', 'fix the path (relative to the topology file)'),
  rule('GH107', 'cidr-host-bits', 'error', 'A CIDR block has host bits set (10.0.0.1/8): which network was meant is ambiguous.', 'contracts checked before deploy', 'write the network address (10.0.0.0/8), or a single address without a prefix'),
  rule('GH108', 'one-sided-edge', 'warning', "A service's egress names another the target does not allow, or an allow edge names a caller whose egress does not list the target: the call is refused.", 'contracts checked before deploy', 'declare both sides (the caller\'s egress and the target\'s allow edge), or neither'),
] as const satisfies readonly Rule[];

export type RuleName = (typeof RULES)[number]['name'];

export function ruleNamed(name: RuleName): Rule {
  return RULES.find((r) => r.name === name)!;
}
