// Forged and misused tokens on a route that takes JWTs: alg none, key
// confusion (HS256 keyed with the published public key), a foreign key under
// the real kid, expired, another audience, another zone's genuine token, and
// a genuine token whose claims were changed. All must be refused (401).
import { randomBytes } from 'node:crypto';
import { SignJWT, generateKeyPair, type JWTPayload } from 'jose';
import { result, pass, fail, skip, error, type ProbeContext } from '../context.ts';
import { send, sendWithToken, jwtRoute, jwks, genuineToken, discovery, THROTTLED } from '../requests.ts';
import type { CheckResult, RouteInfo, ZoneTarget } from '../types.ts';

const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');
const decode = (t: string): JWTPayload | undefined => {
  try {
    return JSON.parse(Buffer.from(t.split('.')[1], 'base64url').toString('utf8')) as JWTPayload;
  } catch {
    return undefined;
  }
};

interface Forgery {
  id: string;
  title: string;
  token: string | undefined;
  /** Why there is no token (the check is skipped). */
  missing?: string;
}

async function forgeries(ctx: ProbeContext, zone: ZoneTarget, route: RouteInfo): Promise<Forgery[]> {
  const now = Math.floor(Date.now() / 1000);
  const genuine = await genuineToken(ctx, zone, route.scopes);
  let issuer = zone.authority ?? zone.gateway!;
  let keys: Array<Record<string, string>> = [];
  if (zone.authority) {
    try {
      issuer = (await discovery(ctx, zone.authority)).issuer;
      keys = (await jwks(ctx, zone.authority)).keys;
    } catch {
      // an authority that does not answer: forge with what we know
    }
  }
  const model = genuine ? decode(genuine) : undefined;
  const header = genuine ? (JSON.parse(Buffer.from(genuine.split('.')[0], 'base64url').toString('utf8')) as { alg: string; kid?: string; typ?: string }) : undefined;
  const kid = header?.kid ?? keys[0]?.kid;
  const alg = header?.alg ?? keys[0]?.alg ?? 'ES256';
  const claims: JWTPayload = {
    iss: issuer,
    sub: 'probe-admin',
    aud: model?.aud ?? `urn:gatehouse:${ctx.plan.trustDomain ?? 'probe'}:${zone.name}`,
    scope: route.scopes.join(' ') || (model?.scope as string | undefined) || 'admin',
    client_id: 'probe',
    iat: now,
    exp: now + 600,
    jti: randomBytes(8).toString('hex'),
    ...(model ? { ...model, sub: 'probe-admin', jti: randomBytes(8).toString('hex'), iat: now, exp: now + 600 } : {}),
  };
  const foreignAlg = ['EdDSA', 'ES256', 'ES384', 'RS256', 'PS256'].includes(alg) ? alg : 'ES256';
  const { privateKey } = await generateKeyPair(foreignAlg, { extractable: true });
  const signForeign = (c: JWTPayload) => new SignJWT(c).setProtectedHeader({ alg: foreignAlg, typ: header?.typ ?? 'at+jwt', ...(kid ? { kid } : {}) }).sign(privateKey);
  const out: Forgery[] = [
    { id: 'token.alg-none', title: "alg 'none' (unsigned) with the zone's claims", token: `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.` },
    { id: 'token.foreign-key', title: 'signed by a key the authority never published, under its kid', token: await signForeign(claims) },
    { id: 'token.expired', title: 'expired an hour ago (exp in the past)', token: await signForeign({ ...claims, iat: now - 7200, exp: now - 3600 }) },
    { id: 'token.wrong-audience', title: 'issued for another audience', token: await signForeign({ ...claims, aud: `urn:probe:other-audience` }) },
  ];
  const published = keys.find((k) => k.kid === kid) ?? keys[0];
  if (published) {
    // HS256 keyed with what the authority publishes: a verifier that takes alg from the token accepts it
    const secrets = [JSON.stringify(published), published.x, published.n].filter((s): s is string => typeof s === 'string');
    const hs = await Promise.all(
      secrets.map((s) => new SignJWT(claims).setProtectedHeader({ alg: 'HS256', typ: 'JWT', ...(kid ? { kid } : {}) }).sign(new TextEncoder().encode(s))),
    );
    out.push({ id: 'token.key-confusion', title: "HS256 keyed with the authority's published public key", token: hs.join('\n') });
  } else out.push({ id: 'token.key-confusion', title: "HS256 keyed with the authority's published public key", token: undefined, missing: 'no published key (JWKS) to confuse' });
  if (genuine) {
    const [h, , s] = genuine.split('.');
    out.push({ id: 'token.tampered', title: 'a genuine token whose claims were changed (subject, scope, expiry), signature kept', token: `${h}.${b64({ ...model, sub: 'probe-admin', scope: `${String(model?.scope ?? '')} admin`.trim(), exp: now + 86400 })}.${s}` });
  } else out.push({ id: 'token.tampered', title: 'a genuine token whose claims were changed, signature kept', token: undefined, missing: 'no genuine token (dev credentials) to tamper with' });
  const other = ctx.plan.zones.find((z) => z !== zone && z.authority && ctx.plan.clients[z.name]);
  const otherToken = other ? await genuineToken(ctx, other) : undefined;
  out.push({
    id: 'token.other-zone',
    title: `a genuine token of another zone${other ? ` (${other.name})` : ''}`,
    token: otherToken,
    ...(otherToken ? {} : { missing: 'no other zone with dev credentials' }),
  });
  return out;
}

export async function tokenChecks(ctx: ProbeContext): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  for (const zone of ctx.plan.zones) {
    if (!zone.gateway) continue;
    const route = jwtRoute(zone);
    const where = `${zone.name} gateway ${zone.gateway}`;
    const expected = 'refused (401)';
    if (!route) {
      out.push(result('token.missing', 'no credential on a route that takes JWTs', 'high', where, expected, skip('no JWT route known (give --config)')));
      continue;
    }
    const target = `${where} route ${route.name}`;
    const judge = async (tokens: string[]) => {
      const seen: string[] = [];
      for (const t of tokens) {
        // on a sender-constrained route every token goes with a valid DPoP proof: a refusal is then about the token itself
        const { res, x } = t
          ? await sendWithToken(ctx, t, { origin: zone.gateway!, method: 'GET', target: route.path, dpop: route.senderConstrained }, { freshSource: true })
          : await send(ctx, zone.gateway!, 'GET', route.path, [], undefined, { freshSource: true });
        seen.push(res ? String(res.status) : (x.error ?? x.cut ?? 'no answer'));
      }
      const numeric = seen.filter((s) => /^\d+$/.test(s)).map(Number);
      if (numeric.some((s) => s < 400)) return fail(`accepted: ${seen.join(', ')}`);
      if (numeric.some((s) => s >= 500)) return fail(`an error instead of a refusal: ${seen.join(', ')}`);
      if (numeric.includes(THROTTLED)) return error(`throttled (429) before the token was judged: ${seen.join(', ')}`);
      if (numeric.length === 0) return error(seen.join(', '));
      return pass(seen.join(', '));
    };
    out.push(result('token.missing', 'no credential on a route that takes JWTs', 'high', target, expected, await judge([''])));
    for (const f of await forgeries(ctx, zone, route)) {
      out.push(result(f.id, f.title, 'high', target, expected, f.token === undefined ? skip(f.missing ?? 'not applicable') : await judge(f.token.split('\n'))));
    }
    const genuine = route.mfa ? undefined : await genuineToken(ctx, zone, route.scopes);
    if (genuine) {
      // the control: a genuine token is accepted, so the refusals above are about the forgery. From the
      // address it was obtained from: a token seen from another network is what a thief looks like, and the
      // deployment's replay detector would quarantine the probe's client for it
      const { res } = await sendWithToken(ctx, genuine, { origin: zone.gateway, method: 'GET', target: route.path, dpop: route.senderConstrained });
      const s = res?.status;
      out.push(result('token.control', 'a genuine token of the zone (control for the checks above)', 'low', target, 'accepted (not 401)', s === undefined ? error('no answer') : s === 401 ? fail('401: the genuine token was refused too, so the refusals above prove less') : pass(String(s))));
    }
  }
  return out;
}
