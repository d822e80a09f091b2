// Kubernetes projected service-account token attestation at the CA (as
// SPIRE's k8s_psat and Vault's kubernetes auth with jwt_validation_pubkeys):
// a pod presents the token its kubelet wrote into a `serviceAccountToken`
// projected volume (audience = the CA's, short expiration); the CA verifies it
// offline against the cluster issuer's public keys, checks iss, aud, exp/nbf,
// its lifetime and its Kubernetes claims, and maps namespace + service account
// to the one workload the config names. Anything else is refused with a
// precise reason; nothing of the token is logged.
//
// Unlike a join token it is not single-use: every replica, a rolling update
// and a restarted pod present their own token. What offline verification
// cannot know is whether the pod still exists (SPIRE asks the API server): a
// token stolen from a pod works until its exp (600 s in the export).
import { readFileSync, statSync } from 'node:fs';
import { createLocalJWKSet, createRemoteJWKSet, customFetch, decodeProtectedHeader, errors, jwtVerify, type JWTPayload, type JWTVerifyGetKey } from 'jose';
import { GatehouseError } from '../shared/errors.ts';
import type { K8sAttestationPlan } from './lib/k8s-attestation-config.ts';

/** Kubernetes signs with RSA or ECDSA keys; anything else (none, HMAC with a public key as secret …) is refused. */
export const K8S_TOKEN_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512'];
/** A projected token is about 1 KiB; a larger one is refused before it is parsed. */
export const MAX_K8S_TOKEN_BYTES = 8 * 1024;
const CLOCK_SKEW_SECONDS = 30;
const JWT_SHAPE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*$/;

export interface K8sAttestation {
  workload: string;
  spiffeId: string;
  namespace: string;
  serviceAccount: string;
  pod: { name: string; uid: string };
  node?: string;
  /** The token's own id (jti), when the cluster sets one (1.29+): audit only. */
  tokenId?: string;
}

export interface K8sAttestor {
  issuer: string;
  audience: string;
  /** The attested workload of `token`, which must be `workload`; throws a GatehouseError naming the reason. */
  attest(token: string, workload: string, now: number): Promise<K8sAttestation>;
}

/** Provisions the key source (reads the JWKS file, or fetches discovery) so that a bad config fails at start. */
export async function createK8sAttestor(plan: K8sAttestationPlan): Promise<K8sAttestor> {
  const keys = 'jwksFile' in plan.keys ? fileKeys(plan.keys.jwksFile) : await discoveredKeys(plan.issuer, plan.keys.caFile);
  return {
    issuer: plan.issuer,
    audience: plan.audience,
    async attest(token, workload, now) {
      const refuse = (why: string, code: 'token_invalid' | 'token_expired' = 'token_invalid', cause?: unknown) =>
        new GatehouseError(code, `the service account token is refused: ${why}`, cause === undefined ? undefined : { cause });
      if (Buffer.byteLength(token) > MAX_K8S_TOKEN_BYTES) throw refuse(`larger than ${MAX_K8S_TOKEN_BYTES} bytes`);
      if (!JWT_SHAPE.test(token)) throw refuse('not a compact JWS');
      let alg: unknown;
      try {
        alg = decodeProtectedHeader(token).alg;
      } catch (error) {
        throw refuse('its header does not decode', 'token_invalid', error);
      }
      if (typeof alg !== 'string' || !K8S_TOKEN_ALGORITHMS.includes(alg))
        throw refuse(`algorithm not accepted (only ${K8S_TOKEN_ALGORITHMS.join(', ')})`, 'token_invalid', new Error(`alg ${JSON.stringify(alg)}`));
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, await keys(), {
          issuer: plan.issuer,
          audience: plan.audience,
          algorithms: K8S_TOKEN_ALGORITHMS,
          currentDate: new Date(now),
          clockTolerance: CLOCK_SKEW_SECONDS,
          requiredClaims: ['exp', 'iat', 'sub'],
        }));
      } catch (error) {
        throw refusalOf(error, refuse);
      }
      const lifetime = payload.exp! - payload.iat!;
      if (lifetime > plan.maxTokenLifetimeSeconds)
        throw refuse(`it lives ${lifetime} s, more than ${plan.maxTokenLifetimeSeconds} s (ask the projected volume for a shorter expirationSeconds)`);
      const k = claimsOf(payload);
      if (!k) throw refuse('it carries no kubernetes.io namespace, service account and pod (a token bound to a pod, from a projected volume, is required)');
      if (payload.sub !== `system:serviceaccount:${k.namespace}:${k.serviceAccount}`) throw refuse('its sub does not name its service account');
      const mapped = plan.accounts.get(`${k.namespace}/${k.serviceAccount}`);
      if (!mapped)
        throw new GatehouseError('unknown_workload', `service account ${k.namespace}/${k.serviceAccount} is not mapped to a workload of the topology`);
      if (mapped.workload !== workload)
        throw new GatehouseError('token_wrong_service', `service account ${k.namespace}/${k.serviceAccount} attests ${mapped.workload}, not the workload asked for`);
      return { workload, spiffeId: mapped.spiffeId, ...k, ...(typeof payload.jti === 'string' ? { tokenId: payload.jti } : {}) };
    },
  };
}

function refusalOf(error: unknown, refuse: (why: string, code?: 'token_invalid' | 'token_expired', cause?: unknown) => GatehouseError): GatehouseError {
  if (error instanceof errors.JWTExpired) return refuse('expired', 'token_expired', error);
  if (error instanceof errors.JWTClaimValidationFailed) {
    const why: Record<string, string> = {
      iss: 'issued by another issuer',
      aud: 'its audience is not this CA',
      nbf: 'not valid yet',
      iat: error.reason === 'missing' ? 'it has no iat' : 'issued in the future',
      exp: 'it has no valid exp (a token that never expires is refused)',
      sub: 'it has no sub',
    };
    return refuse(why[error.claim] ?? `claim ${error.claim} is invalid`, 'token_invalid', error);
  }
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys)
    return refuse('no key of the cluster issuer verifies its signature', 'token_invalid', error);
  if (error instanceof errors.JOSEAlgNotAllowed) return refuse('algorithm not accepted', 'token_invalid', error);
  if (error instanceof errors.JWKSTimeout || !(error instanceof errors.JOSEError))
    return new GatehouseError('internal', 'the cluster issuer keys are unavailable', { cause: error });
  return refuse('malformed', 'token_invalid', error);
}

function claimsOf(payload: JWTPayload): Omit<K8sAttestation, 'workload' | 'spiffeId' | 'tokenId'> | undefined {
  const k = payload['kubernetes.io'] as Record<string, unknown> | undefined;
  if (k === null || typeof k !== 'object') return undefined;
  const sa = k.serviceaccount as Record<string, unknown> | undefined;
  const pod = k.pod as Record<string, unknown> | undefined;
  const node = k.node as Record<string, unknown> | undefined;
  const str = (v: unknown) => (typeof v === 'string' && v.length > 0 && v.length <= 253 ? v : undefined);
  const namespace = str(k.namespace);
  const serviceAccount = str(sa?.name);
  const podName = str(pod?.name);
  const podUid = str(pod?.uid);
  if (!namespace || !serviceAccount || !podName || !podUid) return undefined;
  const nodeName = str(node?.name);
  return { namespace, serviceAccount, pod: { name: podName, uid: podUid }, ...(nodeName ? { node: nodeName } : {}) };
}

/** The JWKS file, re-read when its size or time changes (a rotated cluster key), the last good set kept when a new one is bad. */
function fileKeys(file: string): () => Promise<JWTVerifyGetKey> {
  const load = () => {
    const stat = statSync(file);
    const jwks = JSON.parse(readFileSync(file, 'utf8')) as { keys?: unknown };
    if (!jwks || !Array.isArray(jwks.keys) || jwks.keys.length === 0) throw new Error(`${file}: not a JWKS with keys`);
    return { stamp: `${stat.mtimeMs}:${stat.size}`, keys: createLocalJWKSet(jwks as Parameters<typeof createLocalJWKSet>[0]) };
  };
  let current = load();
  return async () => {
    try {
      const stat = statSync(file);
      if (`${stat.mtimeMs}:${stat.size}` !== current.stamp) current = load();
    } catch {
      // a file being replaced, or a bad new one: the last good keys stay
    }
    return current.keys;
  };
}

/** <issuer>/.well-known/openid-configuration → jwks_uri (https), cached and refreshed by jose. */
async function discoveredKeys(issuer: string, caFile?: string): Promise<() => Promise<JWTVerifyGetKey>> {
  // loaded here: only a CA configured for discovery needs undici (every process reaches this module through pki's door)
  const { Agent, fetch: undiciFetch } = await import('undici');
  const dispatcher = caFile ? new Agent({ connect: { ca: readFileSync(caFile, 'utf8') } }) : undefined;
  const get = ((url: string, init: Record<string, unknown>) => undiciFetch(url, { ...init, ...(dispatcher ? { dispatcher } : {}) })) as unknown as typeof fetch;
  const res = await get(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000), redirect: 'error' } as RequestInit);
  if (res.status !== 200) throw new Error(`the issuer's discovery answered ${res.status}`);
  const text = await res.text();
  if (text.length > 64 * 1024) throw new Error("the issuer's discovery document is too large");
  const doc = JSON.parse(text) as { issuer?: unknown; jwks_uri?: unknown };
  if (doc.issuer !== issuer) throw new Error(`the discovery document names issuer ${JSON.stringify(doc.issuer)}, not ${issuer}`);
  if (typeof doc.jwks_uri !== 'string' || !doc.jwks_uri.startsWith('https://')) throw new Error('the discovery document has no https jwks_uri');
  const set = createRemoteJWKSet(new URL(doc.jwks_uri), { timeoutDuration: 5000, cooldownDuration: 30_000, cacheMaxAge: 600_000, [customFetch]: get });
  return async () => set;
}
