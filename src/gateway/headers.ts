// Header hygiene in one pass over the raw headers: framing checks that the
// HTTP parser leaves to us, hop-by-hop removal (including every header named
// in Connection) before the gateway adds its own, and removal of every header
// a client could use to claim an identity or steer routing.
import { AmbiguousRequest, BadRequest } from '../shared/errors.ts';

/** Hop-by-hop headers (RFC 9110 §7.6.1) plus the legacy ones proxies still see. */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'proxy-authenticate',
  'proxy-authorization',
  'http2-settings',
  // Expect: 100-continue is answered by the gateway itself; never forwarded
  'expect',
]);

/** Identity and routing headers a client must never set; the gateway sets its own. */
const SPOOFABLE = new Set([
  'forwarded',
  'x-real-ip',
  'x-client-ip',
  'x-cluster-client-ip',
  'true-client-ip',
  'cf-connecting-ip',
  'fastly-client-ip',
  'x-original-url',
  'x-rewrite-url',
  'x-original-uri',
  'x-original-host',
  'x-original-forwarded-for',
  'x-forwarded-client-cert',
  'x-client-cert',
  'x-ssl-client-cert',
  'ssl-client-cert',
  'x-http-method-override',
  'x-http-method',
  'x-method-override',
  'x-request-id',
  // trace context: the gateway continues a valid one and sends its own (shared/trace-context.ts)
  'traceparent',
  'tracestate',
  'x-envoy-original-path',
  'x-envoy-external-address',
  'x-envoy-internal',
  // who the caller is, as other gateways and auth proxies tell their upstreams: an upstream written
  // for Kong, oauth2-proxy, Apache, an Azure, AWS or Google front, or a mesh would believe them
  'remote-user',
  'x-user',
  'x-user-id',
  'x-userid',
  'x-username',
  'x-email',
  'x-authenticated-user',
  'x-authenticated-userid',
  'x-authenticated-scope',
  'x-authenticated-groups',
  'x-consumer-id',
  'x-consumer-username',
  'x-consumer-custom-id',
  'x-consumer-groups',
  'x-credential-identifier',
  'x-anonymous-consumer',
  'x-spiffe-id',
  // where the request came from, or went, by other names
  'client-ip',
  'x-originating-ip',
  'x-host',
  'x-original-method',
  'x-proxyuser-ip',
]);

/** Prefixes of whole families of identity headers that other fronts set (oauth2-proxy, Apache, Azure, AWS, Google, Cloudflare). */
const SPOOFABLE_PREFIXES = ['x-remote-', 'x-auth-request-', 'x-ms-client-principal', 'x-ms-token-', 'x-amzn-oidc-', 'x-goog-authenticated-', 'x-goog-iap-', 'cf-access-'];

export const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export interface InboundHeaders {
  /** Headers for the upstream (flat [name, value, …]); host and forwarding headers not yet added. */
  forward: string[];
  host: string | undefined;
  contentLength: number | undefined;
  chunked: boolean;
  /** Client-supplied forwarding values, only meaningful from a trusted proxy. */
  xForwardedFor: string | undefined;
  xForwardedProto: string | undefined;
  xForwardedHost: string | undefined;
  forwarded: string | undefined;
  requestId: string | undefined;
  upgrade: string | undefined;
  traceparent: string | undefined;
  tracestate: string | undefined;
}

/** Headers the gateway reads; none of them is forwarded as sent. */
const READ = [
  'host',
  ':authority',
  'content-length',
  'transfer-encoding',
  'connection',
  'upgrade',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host',
  'forwarded',
  'x-request-id',
  'traceparent',
  'tracestate',
  'content-type',
  'cookie',
] as const;
const READ_NAMES = new Set<string>(READ);

/** What a request header is to the gateway: one it reads, one it drops, or one the upstream gets. */
type Role = (typeof READ)[number] | 'drop' | 'forward';

interface HeaderName {
  lower: string;
  role: Role;
}

function roleOf(name: string): Role {
  if (READ_NAMES.has(name)) return name as Role;
  if (name.charCodeAt(0) === 0x3a /* : */) return 'drop'; // HTTP/2 pseudo-header
  if (HOP_BY_HOP.has(name) || SPOOFABLE.has(name)) return 'drop';
  if (name.startsWith('x-forwarded-') || name.startsWith('x-gatehouse-')) return 'drop';
  for (const prefix of SPOOFABLE_PREFIXES) if (name.startsWith(prefix)) return 'drop';
  // CGI, PHP, WSGI and Rack read X_Real_IP as X-Real-IP: a name with '_' could
  // alias any protected header, so none is forwarded (nginx's default too)
  if (name.includes('_')) return 'drop';
  return 'forward';
}

/**
 * Header names as sent → their lowercase form and role. Clients send the same
 * few spellings on every request, so each is lowercased and classified once;
 * the table is bounded (spellings past the bound are classified every time).
 */
const NAMES = new Map<string, HeaderName>();
const MAX_NAMES = 1024;

function nameOf(raw: string): HeaderName {
  let name = NAMES.get(raw);
  if (name !== undefined) return name;
  const lower = raw.toLowerCase();
  name = { lower, role: roleOf(lower) };
  if (NAMES.size < MAX_NAMES) NAMES.set(raw, name);
  return name;
}

/**
 * Scan `rawHeaders` (Node's flat array) once. `http2` means pseudo-headers are
 * present and connection-specific headers are a protocol error.
 */
export function scanRequestHeaders(raw: readonly string[], http2: boolean, http10 = false): InboundHeaders {
  let host: string | undefined;
  let hostCount = 0;
  let authority: string | undefined;
  let contentLength: number | undefined;
  let clCount = 0;
  let teCount = 0;
  let te: string | undefined;
  let connection: string | undefined;
  let xff: string | undefined;
  let xfp: string | undefined;
  let xfh: string | undefined;
  let fwd: string | undefined;
  let rid: string | undefined;
  let traceparent: string | undefined;
  let tracestate: string | undefined;
  let upgrade: string | undefined;
  let contentType: string | undefined;
  let cookie: string | undefined;
  let forward: string[] = [];

  for (let i = 0; i < raw.length; i += 2) {
    const name = nameOf(raw[i]);
    const value = raw[i + 1];
    switch (name.role) {
      case 'forward':
        forward.push(name.lower, value);
        break;
      case 'drop':
        break;
      case 'host':
        hostCount++;
        host = value;
        break;
      case ':authority':
        authority = value;
        break;
      case 'content-length':
        clCount++;
        if (!/^\d{1,15}$/.test(value)) throw AmbiguousRequest('malformed Content-Length');
        contentLength = Number(value);
        break;
      case 'transfer-encoding':
        teCount++;
        te = value;
        break;
      case 'connection':
        connection = connection === undefined ? value : `${connection},${value}`;
        break;
      case 'upgrade':
        upgrade = value;
        break;
      case 'x-forwarded-for':
        xff = xff === undefined ? value : `${xff}, ${value}`;
        break;
      case 'x-forwarded-proto':
        xfp = value;
        break;
      case 'x-forwarded-host':
        xfh = value;
        break;
      case 'forwarded':
        fwd = fwd === undefined ? value : `${fwd}, ${value}`;
        break;
      case 'x-request-id':
        rid = value;
        break;
      case 'traceparent':
        // a repeated traceparent is invalid: a new trace starts
        traceparent = traceparent === undefined ? value : '';
        break;
      case 'tracestate':
        tracestate = tracestate === undefined ? value : `${tracestate},${value}`;
        break;
      case 'content-type':
        // one body, one type: a policy that checked the first must not hand the upstream a second
        if (contentType !== undefined) throw AmbiguousRequest('repeated Content-Type header');
        contentType = value;
        forward.push('content-type', value);
        break;
      case 'cookie':
        // HTTP/2 sends each cookie as a field of its own; an HTTP/1.1 upstream gets them as one (RFC 9113 §8.2.3)
        cookie = cookie === undefined ? value : `${cookie}; ${value}`;
        break;
    }
  }
  if (cookie !== undefined) forward.push('cookie', cookie);

  if (http2) {
    if (connection !== undefined || teCount > 0 || upgrade !== undefined)
      throw AmbiguousRequest('connection-specific header in an HTTP/2 request');
    if (hostCount > 1) throw AmbiguousRequest('repeated Host header');
    if (authority !== undefined && host !== undefined && authority.toLowerCase() !== host.toLowerCase())
      throw AmbiguousRequest(':authority and Host disagree');
    host = authority ?? host;
  } else {
    if (hostCount === 0) throw BadRequest('missing Host header');
    if (hostCount > 1) throw AmbiguousRequest('repeated Host header');
    if (clCount > 1) throw AmbiguousRequest('repeated Content-Length header');
    if (teCount > 1) throw AmbiguousRequest('repeated Transfer-Encoding header');
    if (te !== undefined) {
      // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 request is faulty framing
      if (http10) throw AmbiguousRequest('Transfer-Encoding in an HTTP/1.0 request');
      if (te.toLowerCase() !== 'chunked') throw AmbiguousRequest('Transfer-Encoding other than exactly chunked');
      if (clCount > 0) throw AmbiguousRequest('both Content-Length and Transfer-Encoding');
    }
  }

  // every header named in Connection is hop-by-hop too (RFC 9110 §7.6.1)
  if (connection !== undefined) {
    let named: Set<string> | undefined;
    for (const token of connection.split(',')) {
      const t = token.trim().toLowerCase();
      if (t === '' || t === 'close' || t === 'keep-alive') continue;
      (named ??= new Set()).add(t);
    }
    if (named !== undefined) {
      const all = forward;
      forward = [];
      for (let i = 0; i < all.length; i += 2) if (!named.has(all[i])) forward.push(all[i], all[i + 1]);
    }
  }

  return {
    forward,
    host,
    contentLength,
    chunked: te !== undefined,
    xForwardedFor: xff,
    xForwardedProto: xfp,
    xForwardedHost: xfh,
    forwarded: fwd,
    requestId: rid,
    traceparent,
    tracestate,
    upgrade,
  };
}

/** Response headers from the upstream that never reach the client. */
const RESPONSE_DROP = new Set([...HOP_BY_HOP, 'server', 'x-powered-by', 'x-aspnet-version', 'x-aspnetmvc-version']);

/** Filter upstream response headers (undici's lowercase object) into `out`. */
export function filterResponseHeaders(
  headers: Record<string, string | string[] | undefined>,
  out: Record<string, string | string[]>,
): void {
  const connection = headers['connection'];
  let drop: Set<string> | undefined;
  // `keep-alive` (what most upstreams send) names a header that is dropped anyway: no set to build
  if (connection !== undefined && connection !== 'keep-alive')
    for (const t of String(connection).split(',')) (drop ??= new Set()).add(t.trim().toLowerCase());
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || RESPONSE_DROP.has(name) || (drop !== undefined && drop.has(name))) continue;
    if (name.startsWith('x-gatehouse-')) continue;
    out[name] = value;
  }
}
