// GET /revocations: how the zone's gateway learns which JWT access tokens were
// revoked before they expire (JWTs are not stored, so a gateway that checks
// only signatures against the JWKS cannot see a revocation). See index.ts for
// the contract the gateway polls by.
import { createHash } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AuthorityContext } from './context.ts';
import { compareClientSecret, REVOCATION_FEED_PROPERTY } from './client-registry.ts';
import { INDEX_GRACE_MS } from './access-token.ts';
import { certificateMatchesSanUri, verifiedPeerCertificate } from './client-certificate.ts';
import { GatehouseError, TooManyRequests } from '../shared/errors.ts';
import { writeProblem } from '../shared/problem.ts';
import { basicClientId, clientSecretThrottle } from './client-throttle.ts';

/** A revocation written by one instance at time t is listed by every poll with since <= t + this. */
export const FEED_OVERLAP_MS = 5_000;
/** How long a gateway may reuse an answer (Cache-Control max-age). */
export const FEED_MAX_AGE_SECONDS = 5;

function problem(res: ServerResponse, requestId: string, error: GatehouseError): void {
  writeProblem(res, error, requestId);
}

const unauthorized = () =>
  new GatehouseError('unauthorized', 'Authenticate as a client allowed to read the revocation feed (HTTP Basic client secret or a tls_client_auth client certificate with ?client_id=).', {
    headers: { 'www-authenticate': 'Basic realm="gatehouse-revocations", charset="UTF-8"' },
  });

function basicCredentials(header: string | undefined): { id: string; secret: string } | undefined {
  if (!header || header.length > 2048) return undefined;
  const m = /^Basic ([A-Za-z0-9+/]+=*)$/.exec(header);
  if (!m) return undefined;
  const decoded = Buffer.from(m[1], 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  try {
    return { id: decodeURIComponent(decoded.slice(0, colon)), secret: decodeURIComponent(decoded.slice(colon + 1)) };
  } catch {
    return undefined;
  }
}

/**
 * The client reading the feed, or undefined. Same answer and cost shape for
 * unknown clients and wrong secrets. A secret is charged to the client's
 * throttle budget before it is compared (client-throttle.ts); a locked budget
 * throws 429.
 */
async function authenticate(ctx: AuthorityContext, req: IncomingMessage, query: URLSearchParams): Promise<string | undefined> {
  const basic = basicCredentials(req.headers.authorization);
  if (basic) {
    const throttle = clientSecretThrottle(ctx);
    const source = req.socket.remoteAddress ?? 'unknown';
    const id = basicClientId(req.headers.authorization) ?? basic.id.slice(0, 128);
    const verdict = await throttle.reserve(id, source);
    if (!verdict.allowed) throw TooManyRequests(verdict.retryAfterSec, 'Too many failed client authentications; retry later.');
    const client = await ctx.clients.find(basic.id);
    const stored = client?.secretHash ?? createHash('sha256').update('absent').digest('base64url');
    const ok = compareClientSecret(ctx.secretHashKey, stored, basic.secret);
    if (!client || !ok || client.metadata.token_endpoint_auth_method !== 'client_secret_basic') {
      throttle.failed(verdict, id, source);
      return undefined;
    }
    await throttle.refund(verdict.charges);
    return client.metadata[REVOCATION_FEED_PROPERTY] === true ? basic.id : undefined;
  }
  if (req.headers.authorization !== undefined) return undefined;
  const clientId = query.get('client_id');
  const cert = verifiedPeerCertificate(req.socket);
  if (!clientId || !cert) return undefined;
  const client = await ctx.clients.find(clientId);
  const san = client?.metadata.tls_client_auth_san_uri;
  if (!client || client.metadata.token_endpoint_auth_method !== 'tls_client_auth' || typeof san !== 'string') return undefined;
  if (!certificateMatchesSanUri(cert, san, ctx.clientCerts)) return undefined;
  return client.metadata[REVOCATION_FEED_PROPERTY] === true ? clientId : undefined;
}

export async function handleRevocationFeed(ctx: AuthorityContext, req: IncomingMessage, res: ServerResponse, requestId: string): Promise<void> {
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return problem(res, requestId, new GatehouseError('method_not_allowed', 'The revocation feed is read with GET.', { headers: { allow: 'GET, HEAD' } }));
  }
  const url = new URL(req.url ?? '/', 'https://authority.invalid');
  for (const key of new Set(url.searchParams.keys())) {
    if (key !== 'since' && key !== 'client_id') return problem(res, requestId, new GatehouseError('bad_request', `Unknown query parameter ${JSON.stringify(key.slice(0, 40))}.`));
    if (url.searchParams.getAll(key).length > 1) return problem(res, requestId, new GatehouseError('bad_request', `Query parameter ${key} was given twice.`));
  }
  let reader: string | undefined;
  try {
    reader = await authenticate(ctx, req, url.searchParams);
  } catch (error) {
    if (error instanceof GatehouseError) return problem(res, requestId, error);
    throw error;
  }
  if (!reader) {
    ctx.audit('revocations.refused', { source: req.socket.remoteAddress, reason: 'client not authenticated or not allowed to read the feed' });
    return problem(res, requestId, unauthorized());
  }
  const now = ctx.now();
  const sinceRaw = url.searchParams.get('since');
  let since = 0;
  if (sinceRaw !== null) {
    if (!/^\d{1,15}$/.test(sinceRaw) || Number(sinceRaw) > now + 60_000)
      return problem(res, requestId, new GatehouseError('bad_request', 'since is the `until` of an earlier answer: milliseconds since the epoch, not in the future.'));
    since = Number(sinceRaw);
  }
  const rows = await ctx.db
    .selectFrom('token_index')
    .select(['jti', 'expires_at'])
    .where('revoked', '=', 1)
    .where('revoked_at', 'is not', null)
    .where('revoked_at', '>', since)
    .where('expires_at', '>', now)
    .orderBy('revoked_at')
    .orderBy('jti')
    .execute();
  const body = JSON.stringify({
    jtis: rows.map((r) => ({ jti: r.jti, exp: Math.floor((Number(r.expires_at) - INDEX_GRACE_MS) / 1000) })),
    until: Math.max(0, now - FEED_OVERLAP_MS),
  });
  const etag = `"${createHash('sha256').update(body.replace(/"until":\d+/, '')).digest('base64url').slice(0, 27)}"`;
  res.setHeader('cache-control', `private, max-age=${FEED_MAX_AGE_SECONDS}`);
  res.setHeader('vary', 'authorization');
  const inm = req.headers['if-none-match'];
  if (inm === etag) {
    // nothing new: the client keeps its `until` (re-polling an overlap is harmless)
    res.statusCode = 304;
    res.setHeader('etag', etag);
    res.end();
    return;
  }
  res.statusCode = 200;
  res.setHeader('content-type', 'application/json');
  res.setHeader('etag', etag);
  res.end(req.method === 'HEAD' ? undefined : body);
}
