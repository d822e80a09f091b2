// WebAuthn (passkeys, security keys) as a second factor, on
// @simplewebauthn/server. Two ceremonies:
//   register: a signed-in user adds a credential (account.ts, /account);
//   login:    after the password, an assertion instead of a TOTP code
//             (interactions.ts, /interaction/:uid/webauthn).
//
// Every challenge is 32 random bytes, stored with what it was issued to (the
// interaction uid or the session uid, and the account) and a short expiry, and
// is consumed (deleted) by the first response that presents it, before
// anything else is checked: a response is tried once. Issuing a new challenge
// for the same interaction or session drops the earlier one. Origin, RP ID
// (hash in authenticator data), type, credential ownership and the signature
// counter are checked here with a precise reason before the library checks
// the rest (attestation statement, flags, signature). Counters move only
// forward, by compare-and-set, so of two racing assertions one wins.
//
// amr: a credential that may be synced between devices (backup eligible) is a
// software-secured key (`swk`), else a hardware-bound one (`hwk`) (RFC 8176).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import type { parseAuthenticatorData } from '@simplewebauthn/server/helpers';
import type { AuthorityContext } from './context.ts';
import type { PasskeyRecord, UserRecord } from './user-registry.ts';

// The library (some 100 modules) loads with the first passkey ceremony, not
// with every authority: most sign-ins never reach one.
const simpleWebAuthn = () => import('@simplewebauthn/server');
const helpers = () => import('@simplewebauthn/server/helpers');

/** how long a challenge can be answered */
export const CHALLENGE_TTL_MS = 120_000;
/** the largest `response` field accepted (a packed attestation with a certificate chain fits) */
export const MAX_RESPONSE_CHARS = 16 * 1024;
/** ES256, EdDSA, RS256 */
const ALGORITHMS = [-7, -8, -257];
const B64URL = /^[A-Za-z0-9_-]*$/;
const TRANSPORTS = new Set(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']);
const NAME = /^[^\p{Cc}\p{Cf}]{1,64}$/u;

export type WebAuthnReason =
  | 'malformed'
  | 'wrong_type'
  | 'challenge_unknown'
  | 'wrong_origin'
  | 'cross_origin'
  | 'wrong_rp_id'
  | 'unknown_credential'
  | 'not_this_users_credential'
  | 'wrong_user_handle'
  | 'counter_regression'
  | 'user_not_present'
  | 'already_registered'
  | 'unsupported_algorithm'
  | 'invalid';

const MESSAGES: Record<WebAuthnReason, string> = {
  malformed: 'The passkey response is malformed.',
  wrong_type: 'The passkey response is for another kind of request.',
  challenge_unknown: 'This passkey request has expired or was already used. Try again.',
  wrong_origin: 'The passkey response was made for another origin.',
  cross_origin: 'The passkey response was made inside a frame of another site.',
  wrong_rp_id: 'The passkey response was made for another relying party (RP ID).',
  unknown_credential: 'This passkey is not registered here.',
  not_this_users_credential: 'This passkey is not registered for this account.',
  wrong_user_handle: 'This passkey belongs to another account.',
  counter_regression: "This passkey's signature counter went backwards, so it may have been copied. Use another factor and tell your administrator.",
  user_not_present: 'The authenticator did not confirm that you were present.',
  already_registered: 'This passkey is already registered.',
  unsupported_algorithm: "This passkey's key type is not supported.",
  invalid: 'The passkey signature or data is not valid.',
};

export class WebAuthnError extends Error {
  readonly reason: WebAuthnReason;
  readonly status: number;
  constructor(reason: WebAuthnReason, status = 400) {
    super(MESSAGES[reason]);
    this.reason = reason;
    this.status = status;
  }
}

export function amrFor(p: Pick<PasskeyRecord, 'deviceType'>): 'hwk' | 'swk' {
  return p.deviceType === 'multiDevice' ? 'swk' : 'hwk';
}

/** The WebAuthn user handle of a user: their id (not their name). */
function userHandle(user: UserRecord): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(user.id, 'utf8'));
}

async function issueChallenge(ctx: AuthorityContext, purpose: 'register' | 'login', binding: string, accountId: string): Promise<string> {
  const challenge = randomBytes(32).toString('base64url');
  await ctx.db.deleteFrom('webauthn_challenges').where('purpose', '=', purpose).where('binding', '=', binding).execute();
  await ctx.db
    .insertInto('webauthn_challenges')
    .values({ challenge, purpose, binding, account_id: accountId, expires_at: ctx.now() + CHALLENGE_TTL_MS })
    .execute();
  return challenge;
}

/** Deletes the challenge if it is live and was issued for this; true when this call consumed it. */
async function consumeChallenge(ctx: AuthorityContext, challenge: string, purpose: 'register' | 'login', binding: string, accountId: string): Promise<boolean> {
  if (!/^[A-Za-z0-9_-]{43}$/.test(challenge)) return false;
  const r = await ctx.db
    .deleteFrom('webauthn_challenges')
    .where('challenge', '=', challenge)
    .where('purpose', '=', purpose)
    .where('binding', '=', binding)
    .where('account_id', '=', accountId)
    .where('expires_at', '>', ctx.now())
    .executeTakeFirst();
  return Number(r.numDeletedRows) === 1;
}

// ---- strict parsing of what the browser sends ----

function b64(value: unknown, max: number, min = 1): string {
  if (typeof value !== 'string' || value.length < min || value.length > max || !B64URL.test(value)) throw new WebAuthnError('malformed');
  return value;
}

function parseJson(raw: string | null): Record<string, any> {
  if (raw === null || raw === '' || raw.length > MAX_RESPONSE_CHARS) throw new WebAuthnError('malformed');
  let v: unknown;
  try {
    v = JSON.parse(raw);
  } catch {
    throw new WebAuthnError('malformed');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new WebAuthnError('malformed');
  return v as Record<string, any>;
}

function parseCommon(v: Record<string, any>): { id: string; response: Record<string, any> } {
  const id = b64(v.id, 1400);
  if (v.rawId !== id || v.type !== 'public-key') throw new WebAuthnError('malformed');
  if (typeof v.response !== 'object' || v.response === null || Array.isArray(v.response)) throw new WebAuthnError('malformed');
  if (v.clientExtensionResults !== undefined && (typeof v.clientExtensionResults !== 'object' || v.clientExtensionResults === null))
    throw new WebAuthnError('malformed');
  return { id, response: v.response };
}

interface ClientData {
  type: string;
  challenge: string;
  origin: string;
}

function clientData(encoded: string): ClientData {
  let v: any;
  try {
    v = JSON.parse(Buffer.from(encoded, 'base64url').toString('utf8'));
  } catch {
    throw new WebAuthnError('malformed');
  }
  if (typeof v !== 'object' || v === null || typeof v.type !== 'string' || typeof v.challenge !== 'string' || typeof v.origin !== 'string')
    throw new WebAuthnError('malformed');
  if (v.crossOrigin === true || v.topOrigin !== undefined) throw new WebAuthnError('cross_origin');
  return v as ClientData;
}

function rpIdMatches(ctx: AuthorityContext, rpIdHash: Uint8Array): boolean {
  const expected = createHash('sha256').update(ctx.webauthn.rpId).digest();
  return rpIdHash.length === 32 && timingSafeEqual(Buffer.from(rpIdHash), expected);
}

async function authData(encoded: string) {
  const { parseAuthenticatorData } = await helpers();
  try {
    return parseAuthenticatorData(new Uint8Array(Buffer.from(encoded, 'base64url')));
  } catch {
    throw new WebAuthnError('malformed');
  }
}

// ---- registration (enrolment) ----

export async function registrationOptions(
  ctx: AuthorityContext,
  user: UserRecord,
  binding: string,
): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const existing = await ctx.users.passkeys(user.id);
  const challenge = await issueChallenge(ctx, 'register', binding, user.id);
  const { generateRegistrationOptions } = await simpleWebAuthn();
  return generateRegistrationOptions({
    rpName: ctx.webauthn.rpName,
    rpID: ctx.webauthn.rpId,
    userName: user.username,
    userDisplayName: user.username,
    userID: userHandle(user),
    challenge: new Uint8Array(Buffer.from(challenge, 'base64url')),
    timeout: CHALLENGE_TTL_MS,
    attestationType: 'none',
    excludeCredentials: existing.map((c) => ({ id: c.id, transports: c.transports })),
    // a second factor: a non-discoverable credential will do, and the password was the knowledge factor
    authenticatorSelection: { residentKey: 'discouraged', userVerification: 'discouraged' },
    supportedAlgorithmIDs: ALGORITHMS,
  });
}

export async function verifyRegistration(
  ctx: AuthorityContext,
  user: UserRecord,
  binding: string,
  raw: string | null,
  nameInput: string | null,
): Promise<PasskeyRecord> {
  const v = parseJson(raw);
  const { id, response } = parseCommon(v);
  const cdj = b64(response.clientDataJSON, 4096);
  b64(response.attestationObject, 12 * 1024);
  if (response.transports !== undefined) {
    if (!Array.isArray(response.transports) || response.transports.length > 8 || !response.transports.every((t: unknown) => typeof t === 'string' && t.length <= 32))
      throw new WebAuthnError('malformed');
  }
  const name = (nameInput ?? '').trim() || `Passkey ${new Date(ctx.now()).toISOString().slice(0, 10)}`;
  if (!NAME.test(name)) throw new WebAuthnError('malformed');
  const cd = clientData(cdj);
  if (!(await consumeChallenge(ctx, cd.challenge, 'register', binding, user.id))) throw new WebAuthnError('challenge_unknown');
  if (cd.type !== 'webauthn.create') throw new WebAuthnError('wrong_type');
  if (cd.origin !== ctx.webauthn.origin) throw new WebAuthnError('wrong_origin');
  const { decodeAttestationObject, parseAuthenticatorData } = await helpers();
  let parsed: ReturnType<typeof parseAuthenticatorData>;
  try {
    const attestation = decodeAttestationObject(new Uint8Array(Buffer.from(response.attestationObject, 'base64url')));
    parsed = parseAuthenticatorData(attestation.get('authData'));
  } catch {
    throw new WebAuthnError('malformed');
  }
  if (!rpIdMatches(ctx, parsed.rpIdHash)) throw new WebAuthnError('wrong_rp_id');
  if (!parsed.flags.up) throw new WebAuthnError('user_not_present');
  if (!parsed.credentialID || Buffer.from(parsed.credentialID).toString('base64url') !== id) throw new WebAuthnError('malformed');
  if (await ctx.users.passkeyById(id)) throw new WebAuthnError('already_registered', 409);

  const { verifyRegistrationResponse } = await simpleWebAuthn();
  let result: Awaited<ReturnType<typeof verifyRegistrationResponse>>;
  try {
    result = await verifyRegistrationResponse({
      response: v as RegistrationResponseJSON,
      expectedChallenge: cd.challenge,
      expectedOrigin: ctx.webauthn.origin,
      expectedRPID: ctx.webauthn.rpId,
      requireUserPresence: true,
      requireUserVerification: false,
      supportedAlgorithmIDs: ALGORITHMS,
    });
  } catch (error) {
    if (/public key alg/i.test((error as Error).message)) throw new WebAuthnError('unsupported_algorithm');
    throw new WebAuthnError('invalid');
  }
  if (!result.verified) throw new WebAuthnError('invalid');
  const info = result.registrationInfo;
  const transports = (response.transports ?? []).filter((t: string) => TRANSPORTS.has(t));
  const passkey: Omit<PasskeyRecord, 'createdAt' | 'lastUsedAt'> = {
    id: info.credential.id,
    name,
    publicKey: info.credential.publicKey,
    counter: info.credential.counter,
    transports,
    deviceType: info.credentialDeviceType,
    backedUp: info.credentialBackedUp,
    aaguid: info.aaguid,
  };
  if (!(await ctx.users.addPasskey(user.id, passkey))) throw new WebAuthnError('already_registered', 409);
  return { ...passkey, createdAt: ctx.now(), lastUsedAt: null };
}

// ---- authentication (second factor at sign-in) ----

export async function authenticationOptions(
  ctx: AuthorityContext,
  accountId: string,
  uid: string,
): Promise<PublicKeyCredentialRequestOptionsJSON | undefined> {
  const passkeys = await ctx.users.passkeys(accountId);
  if (passkeys.length === 0) return undefined;
  const challenge = await issueChallenge(ctx, 'login', uid, accountId);
  const { generateAuthenticationOptions } = await simpleWebAuthn();
  return generateAuthenticationOptions({
    rpID: ctx.webauthn.rpId,
    allowCredentials: passkeys.map((c) => ({ id: c.id, transports: c.transports })),
    challenge: new Uint8Array(Buffer.from(challenge, 'base64url')),
    timeout: CHALLENGE_TTL_MS,
    userVerification: 'discouraged',
  });
}

/** Checks an assertion for the account signing in under interaction `uid`; returns the credential used. */
export async function verifyAuthentication(ctx: AuthorityContext, user: UserRecord, uid: string, raw: string | null): Promise<PasskeyRecord> {
  const v = parseJson(raw);
  const { id, response } = parseCommon(v);
  const cdj = b64(response.clientDataJSON, 4096);
  const ad = b64(response.authenticatorData, 4096, 50);
  b64(response.signature, 1024);
  if (response.userHandle !== undefined && response.userHandle !== null) b64(response.userHandle, 256, 0);
  const cd = clientData(cdj);
  if (!(await consumeChallenge(ctx, cd.challenge, 'login', uid, user.id))) throw new WebAuthnError('challenge_unknown');
  if (cd.type !== 'webauthn.get') throw new WebAuthnError('wrong_type');
  if (cd.origin !== ctx.webauthn.origin) throw new WebAuthnError('wrong_origin');
  const parsed = await authData(ad);
  if (!rpIdMatches(ctx, parsed.rpIdHash)) throw new WebAuthnError('wrong_rp_id');
  const found = await ctx.users.passkeyById(id);
  if (!found) throw new WebAuthnError('unknown_credential');
  if (found.userId !== user.id) throw new WebAuthnError('not_this_users_credential');
  if (typeof response.userHandle === 'string' && response.userHandle !== '' && response.userHandle !== Buffer.from(userHandle(user)).toString('base64url'))
    throw new WebAuthnError('wrong_user_handle');
  const stored = found.passkey;
  if (!parsed.flags.up) throw new WebAuthnError('user_not_present');
  if ((parsed.counter > 0 || stored.counter > 0) && parsed.counter <= stored.counter) throw new WebAuthnError('counter_regression');

  const { verifyAuthenticationResponse } = await simpleWebAuthn();
  let result: Awaited<ReturnType<typeof verifyAuthenticationResponse>>;
  try {
    result = await verifyAuthenticationResponse({
      response: v as AuthenticationResponseJSON,
      expectedChallenge: cd.challenge,
      expectedOrigin: ctx.webauthn.origin,
      expectedRPID: ctx.webauthn.rpId,
      credential: { id: stored.id, publicKey: new Uint8Array(stored.publicKey), counter: stored.counter, transports: stored.transports },
      requireUserVerification: false,
    });
  } catch {
    throw new WebAuthnError('invalid');
  }
  if (!result.verified) throw new WebAuthnError('invalid');
  // compare-and-set from the value checked above: a racing assertion with the same counter loses
  if (!(await ctx.users.advancePasskeyCounter(user.id, stored.id, stored.counter, result.authenticationInfo.newCounter)))
    throw new WebAuthnError('counter_regression');
  return { ...stored, counter: result.authenticationInfo.newCounter, lastUsedAt: ctx.now() };
}
