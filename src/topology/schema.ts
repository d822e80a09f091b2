// The gatehouse.yaml schema. The schema *is* the documentation: every field has
// a description and, where it may be left out, the secure default. Unknown keys
// are errors everywhere (strict objects), so a typo never silently disables a rule.
import { z } from 'zod';
import { isIP } from 'node:net';
import { AuthorityConfig } from './schema-authority.ts';
import { ServiceMeshFields } from './schema-mesh.ts';
import { VaultConfig } from './schema-vault.ts';
import { MonitorConfig } from './schema-monitor.ts';
import { ZONE_UNIT_FIELDS, ROUTE_UNIT_FIELDS } from '../gateway/policies/fields.ts';

const NAME = /^[a-z][a-z0-9-]{0,62}$/;
const name = (what: string) =>
  z.string().regex(NAME, `${what} must be lowercase letters, digits and '-', starting with a letter (at most 63)`);

/** `host:port`; the host is an IP literal or `localhost`, IPv6 in brackets; port 0 picks a free one. */
export const Listen = z
  .string()
  .describe('host:port to listen on; IPv6 as [::1]:443; port 0 picks a free port')
  .superRefine((value, ctx) => {
    const parsed = parseListen(value);
    if (typeof parsed === 'string') ctx.addIssue({ code: 'custom', message: parsed });
  });

export function parseListen(value: string): { host: string; port: number } | string {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) return `expected host:port (for example 127.0.0.1:8443 or [::1]:8443), got ${JSON.stringify(value)}`;
  const host = m[1] ?? m[2];
  const port = Number(m[3]);
  if (port > 65535) return `port ${port} is out of range (0-65535)`;
  if (m[1] !== undefined && isIP(host) !== 6) return `${JSON.stringify(host)} is not an IPv6 address`;
  if (m[2] !== undefined && host !== 'localhost' && isIP(host) !== 4)
    return `host must be an IP address or localhost, got ${JSON.stringify(host)}`;
  return { host, port };
}

export { Cidr, ZoneIngress } from './primitives.ts';
import { Cidr, ZoneIngress } from './primitives.ts';

const TlsFiles = z
  .object({
    cert: z.string().min(1).describe('PEM certificate chain file, relative to the topology file'),
    key: z.string().min(1).describe('PEM private key file, relative to the topology file'),
  })
  .strict();

export const Tls = z
  .union([z.literal('dev'), TlsFiles])
  .default('dev')
  .describe("'dev': a certificate from a local dev CA in the state dir; or cert/key files (reloaded on change)");

const ms = (def: number, min: number, max: number, what: string) =>
  z.number().int().min(min).max(max).default(def).describe(`${what}, in milliseconds (default ${def})`);

export const GatewayLimits = z
  .object({
    maxHeaderBytes: z
      .number()
      .int()
      .min(1024)
      .max(65536)
      .default(16384)
      .describe('largest request head (request line and headers) accepted; larger gets 431'),
    maxBodyBytes: z
      .number()
      .int()
      .min(0)
      .max(1024 ** 3)
      .default(1024 * 1024)
      .describe('largest request body accepted (routes may lower or raise it); larger gets 413'),
    headersTimeoutMs: ms(10_000, 100, 120_000, 'time a client has to send the request head'),
    requestTimeoutMs: ms(30_000, 100, 600_000, 'time a client has to send the whole request'),
    keepAliveTimeoutMs: ms(5_000, 100, 120_000, 'idle time before a kept-alive connection is closed'),
    maxConnections: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .default(10_000)
      .describe('open client connections per worker; at the limit, connections that have not finished their TLS handshake or sent a request are shed first'),
    maxConnectionsPerSource: z
      .number()
      .int()
      .min(1)
      .max(1_000_000)
      .optional()
      .describe("open connections one client address may hold (trustedProxies are exempt); absent: a tenth of maxConnections (at least 64)"),
    handshakeTimeoutMs: ms(5_000, 100, 60_000, 'time a new connection has to finish its TLS handshake (or, in plaintext, to send a request head)'),
    drainTimeoutMs: ms(10_000, 0, 600_000, 'on shutdown, how long in-flight requests may take to finish before connections are cut'),
  })
  .strict();

export const SecurityHeaders = z
  .object({
    hsts: z.boolean().default(true).describe('send Strict-Transport-Security (max-age one year)'),
    frameOptions: z
      .enum(['DENY', 'SAMEORIGIN', 'off'])
      .default('DENY')
      .describe("X-Frame-Options and CSP frame-ancestors; 'off' sends neither"),
    referrerPolicy: z.string().default('no-referrer').describe('Referrer-Policy value'),
  })
  .strict();

export const GatewayConfig = z
  .object({
    listen: Listen.default('127.0.0.1:8443'),
    tls: Tls,
    plaintext: z
      .boolean()
      .default(false)
      .describe(
        'serve plain HTTP on `listen` instead of HTTPS; only behind a TLS-terminating load balancer, never by default',
      ),
    redirectListen: Listen.optional().describe(
      'an extra plain-HTTP listener that only answers 308 redirects to HTTPS; absent: none',
    ),
    trustedProxies: z
      .array(Cidr)
      .default([])
      .describe('CIDRs whose X-Forwarded-* / Forwarded / request id are believed; empty: nobody is'),
    admin: z
      .object({
        listen: Listen.default('127.0.0.1:0').describe('admin listener (health, metrics, reload); loopback by default'),
      })
      .strict()
      .default({ listen: '127.0.0.1:0' }),
    workers: z.number().int().min(1).max(256).optional().describe('worker processes; absent: one per core'),
    limits: GatewayLimits.default(GatewayLimits.parse({})),
    headers: SecurityHeaders.default(SecurityHeaders.parse({})),
    accessLog: z
      .object({
        enabled: z.boolean().default(true).describe('write one JSON line per request'),
        headers: z.boolean().default(false).describe('include request headers (credentials are always redacted)'),
      })
      .strict()
      .default({ enabled: true, headers: false }),
    tracing: z
      .object({
        otlp: z
          .object({
            endpoint: z
              .url({ protocol: /^https?$/, error: 'an http(s) URL of an OTLP/HTTP traces receiver, e.g. http://127.0.0.1:4318/v1/traces' })
              .max(2048)
              .describe('where spans are sent: an OTLP/HTTP (JSON) traces endpoint, e.g. a collector at http://127.0.0.1:4318/v1/traces'),
            sampleRatio: z
              .number()
              .min(0)
              .max(1)
              .default(1)
              .describe("share of new traces recorded (0–1); a request that arrives with a traceparent follows its caller's sampled flag"),
          })
          .strict()
          .optional()
          .describe('OpenTelemetry export of one server span per request; absent: no spans are made or sent (the W3C trace context is still propagated)'),
      })
      .strict()
      .default({})
      .describe('distributed tracing; off by default'),
  })
  .strict();

const METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'] as const;
export const Method = z.enum(METHODS);
export const ALL_METHODS: readonly string[] = METHODS;

export const Route = z
  .object({
    name: name('route name').optional().describe('name used in metrics and logs; absent: derived from the path'),
    hosts: z
      .array(
        z
          .string()
          .min(1)
          .max(253)
          .regex(/^(\*\.)?[A-Za-z0-9.-]+\.?$/, 'expected a host name (optionally starting with *.)'),
      )
      .min(1)
      .optional()
      .describe('host names this route answers (case-insensitive, port and trailing dot ignored); absent: any host'),
    path: z
      .string()
      .max(2048)
      .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,=:@/%{}]*$/, 'path must start with / and hold only URL path characters')
      .describe(
        'path to match, in canonical form; a whole segment `{name}` is a path parameter (exact routes only): `/api/orders/{id}`',
      ),
    match: z
      .enum(['exact', 'prefix'])
      .default('exact')
      .describe("'exact' or 'prefix' (a prefix matches whole segments only)"),
    methods: z
      .union([z.literal('*'), z.array(Method).min(1)])
      .default(['GET', 'HEAD'])
      .describe("allowed methods; '*' means every method Gatehouse proxies (never CONNECT or TRACE)"),
    service: name('service').describe('the service (in this zone) that receives the requests'),
    rewrite: z
      .object({
        prefix: z
          .string()
          .regex(/^\/[A-Za-z0-9\-._~!$&'()*+,=:@/]*$/, 'rewrite prefix must be a canonical path')
          .describe('replaces the matched prefix'),
      })
      .strict()
      .optional()
      .describe('absent: the path goes upstream unchanged'),
    allowPathParameters: z
      .boolean()
      .default(false)
      .describe("accept ';' in the path (matrix parameters); refused with 400 otherwise"),
    limits: z
      .object({
        maxBodyBytes: z.number().int().min(0).max(1024 ** 3).optional().describe('absent: the zone limit'),
        timeoutMs: z.number().int().min(100).max(600_000).optional().describe('upstream timeout; absent: the service one'),
      })
      .strict()
      .default({}),
    frameOptions: z
      .enum(['DENY', 'SAMEORIGIN', 'off'])
      .optional()
      .describe("per-route override of the zone's frame denial; absent: the zone setting"),
    cors: z
      .object({
        origins: z
          .array(z.union([z.literal('*'), z.string().regex(/^https?:\/\/[a-z0-9.-]+(:\d{1,5})?$/, 'an origin is scheme://host[:port], lowercase, no path')]))
          .min(1)
          .describe("allowed origins; '*' any origin (never with credentials)"),
        methods: z.array(Method).min(1).optional().describe("methods allowed cross-origin; absent: the route's methods"),
        headers: z
          .array(z.string().regex(/^[A-Za-z0-9-]{1,64}$/))
          .default([])
          .describe('request headers allowed cross-origin (beyond the CORS-safelisted ones)'),
        exposeHeaders: z.array(z.string().regex(/^[A-Za-z0-9-]{1,64}$/)).default([]).describe('response headers scripts may read'),
        credentials: z.boolean().default(false).describe('allow cookies and Authorization cross-origin'),
        maxAgeSeconds: z.number().int().min(0).max(86400).default(600).describe('how long browsers may cache a preflight'),
      })
      .strict()
      .optional()
      .describe('cross-origin access for browsers; absent: no CORS headers, preflights get 405'),
    // policies, cedar, validate, auth: the policy units' own settings (gateway/policies/fields.ts)
    ...ROUTE_UNIT_FIELDS,
  })
  .strict();

export const Zone = z
  .object({
    gateway: GatewayConfig.optional().describe('the zone gateway; absent: the zone has no entry point'),
    authority: AuthorityConfig.optional().describe('the zone OAuth 2 / OIDC authority; absent: none'),
    ingress: ZoneIngress.optional().describe(
      "who may connect to the zone's gateway (client networks, workload certificates); absent: any client that completes TLS",
    ),
    // policies, authFailures, authentication: the policy units' own settings (gateway/policies/fields.ts)
    ...ZONE_UNIT_FIELDS,
    routes: z.array(Route).default([]).describe('routes of the zone gateway; empty: everything is 404'),
  })
  .strict();

export const Service = z
  .object({
    zone: name('zone').describe('the zone the service lives in'),
    upstream: z
      .string()
      .url()
      .regex(/^https?:\/\/[^/?#]+\/?$/, 'upstream must be http(s)://host:port with no path, query or fragment')
      .optional()
      .describe('where the service listens; absent: `run` starts it and the address is discovered'),
    run: z
      .string()
      .min(1)
      .optional()
      .describe('module (relative to the topology file) that `gatehouse up` starts; it exports start()'),
    timeouts: z
      .object({
        connectMs: ms(2_000, 50, 60_000, 'upstream connect timeout'),
        headersMs: ms(15_000, 100, 600_000, 'time for the upstream to send response headers'),
        bodyMs: ms(30_000, 100, 600_000, 'idle time allowed between upstream body chunks'),
      })
      .strict()
      .default({ connectMs: 2_000, headersMs: 15_000, bodyMs: 30_000 }),
    connections: z.number().int().min(1).max(4096).default(128).describe('keep-alive pool size per gateway worker'),
    circuitBreaker: z
      .object({
        failures: z.number().int().min(1).max(1000).default(5).describe('consecutive failures that open the circuit'),
        openMs: ms(10_000, 100, 600_000, 'how long the circuit stays open before one trial request'),
      })
      .strict()
      .default({ failures: 5, openMs: 10_000 }),
    ...ServiceMeshFields,
  })
  .strict();

/** What a host runs: a service, a zone's gateway or authority, the CA or the control plane. */
const HostComponent = z
  .string()
  .regex(
    /^(?:[a-z][a-z0-9-]{0,62}|(?:gateway|authority):[a-z][a-z0-9-]{0,62}|gatehouse:(?:ca|control))$/,
    'a component is a service name, gateway:<zone>, authority:<zone>, gatehouse:ca or gatehouse:control',
  );

/** One machine of a multi-host deployment (`gatehouse export nftables --host`). */
export const HostConfig = z
  .object({
    address: z
      .string()
      .refine((v) => isIP(v) !== 0, 'address must be an IPv4 or IPv6 address (no name: firewall rules match addresses)')
      .describe('the address the other hosts reach this one at'),
    runs: z
      .record(HostComponent, z.number().int().min(1).max(65535).nullable())
      .describe(
        "components on this host and the TCP port each listens on; null (empty): the port the topology gives it (gateway and authority listen, a service's upstream); the CA and the control plane always need one",
      ),
    loopback: z
      .boolean()
      .default(true)
      .describe('accept all traffic on the loopback interface (admin listeners, sidecars); false: only the declared flows'),
  })
  .strict();

export const Topology = z
  .object({
    version: z.literal(1).describe('schema version; must be 1'),
    trustDomain: z
      .string()
      .regex(/^[a-z0-9]([a-z0-9.-]{0,253}[a-z0-9])?$/, 'trust domain must be a lowercase DNS-like name')
      .describe('SPIFFE trust domain of every identity in this topology'),
    zones: z.record(name('zone'), Zone).describe('zones by name'),
    services: z.record(name('service'), Service).default({}).describe('services by name'),
    hosts: z
      .record(name('host'), HostConfig)
      .default({})
      .describe('machines of a multi-host deployment, by name; absent or empty: one machine (gatehouse up)'),
    vault: VaultConfig.optional().describe('the vault (encryption, tokenization) and its key grants; absent: no vault runs'),
    monitor: MonitorConfig.default(MonitorConfig.parse({})).describe(
      'what the control plane does with security events: retention, detectors that quarantine; absent: the defaults',
    ),
  })
  .strict();

export type Topology = z.infer<typeof Topology>;
export type ZoneConfig = z.infer<typeof Zone>;
export type GatewayConfig = z.infer<typeof GatewayConfig>;
export type RouteConfig = z.infer<typeof Route>;
export type ServiceConfig = z.infer<typeof Service>;
export type HostConfig = z.infer<typeof HostConfig>;
