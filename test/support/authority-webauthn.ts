// A software WebAuthn authenticator for tests (no browser): an ECDSA P-256 key
// from node:crypto, a `none` attestation object (authenticator data with the
// RP ID hash, UP|UV|AT flags, the signature counter, attested credential data
// with AAGUID, credential id and COSE public key) and clientDataJSON built by
// hand, as a browser and a security key would. Every field can be bent for
// hostile cases (origin, RP ID, counter, type, challenge).
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';

// ---- the little CBOR the attestation object needs (RFC 8949, definite lengths) ----

type Cbor = number | string | Uint8Array | Map<Cbor, Cbor> | Cbor[];

function head(major: number, n: number): Buffer {
  if (n < 24) return Buffer.from([(major << 5) | n]);
  if (n < 0x100) return Buffer.from([(major << 5) | 24, n]);
  if (n < 0x10000) {
    const b = Buffer.alloc(3);
    b[0] = (major << 5) | 25;
    b.writeUInt16BE(n, 1);
    return b;
  }
  const b = Buffer.alloc(5);
  b[0] = (major << 5) | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

export function cbor(value: Cbor): Buffer {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error('only integers');
    return value >= 0 ? head(0, value) : head(1, -1 - value);
  }
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), Buffer.from(value)]);
  if (Array.isArray(value)) return Buffer.concat([head(4, value.length), ...value.map(cbor)]);
  const parts: Buffer[] = [head(5, value.size)];
  for (const [k, v] of value) parts.push(cbor(k), cbor(v));
  return Buffer.concat(parts);
}

// ---- the authenticator ----

export const FLAG_UP = 0x01;
export const FLAG_UV = 0x04;
export const FLAG_BE = 0x08;
export const FLAG_BS = 0x10;
export const FLAG_AT = 0x40;

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest();
const b64u = (b: Buffer | Uint8Array) => Buffer.from(b).toString('base64url');

export interface CreationOptions {
  challenge: string;
  rp: { id?: string; name: string };
  user: { id: string; name: string };
  excludeCredentials?: { id: string }[];
}

export interface RequestOptions {
  challenge: string;
  rpId?: string;
  allowCredentials?: { id: string }[];
}

export interface Bend {
  /** clientDataJSON origin (default: the one the authenticator was made for) */
  origin?: string;
  /** the RP ID whose hash goes into authenticator data (default: the options' RP ID) */
  rpId?: string;
  /** the signature counter to report (default: the next one) */
  counter?: number;
  type?: string;
  challenge?: string;
  flags?: number;
  userHandle?: string;
  crossOrigin?: boolean;
}

export class SoftAuthenticator {
  readonly credentialId: Buffer;
  readonly aaguid: Buffer;
  readonly #key: KeyObject;
  readonly #cose: Buffer;
  readonly #origin: string;
  readonly #backupEligible: boolean;
  counter: number;
  /** the user handle the RP gave at registration */
  userHandle?: string;

  constructor(origin: string, o: { backupEligible?: boolean; counter?: number } = {}) {
    this.#origin = origin;
    this.#backupEligible = o.backupEligible ?? false;
    this.counter = o.counter ?? 0;
    this.credentialId = randomBytes(32);
    this.aaguid = randomBytes(16);
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    this.#key = privateKey;
    const jwk = publicKey.export({ format: 'jwk' });
    this.#cose = cbor(
      new Map<Cbor, Cbor>([
        [1, 2], // kty: EC2
        [3, -7], // alg: ES256
        [-1, 1], // crv: P-256
        [-2, Buffer.from(jwk.x!, 'base64url')],
        [-3, Buffer.from(jwk.y!, 'base64url')],
      ]),
    );
  }

  get id(): string {
    return b64u(this.credentialId);
  }

  #flags(extra: number): number {
    return FLAG_UP | FLAG_UV | (this.#backupEligible ? FLAG_BE | FLAG_BS : 0) | extra;
  }

  #clientData(type: string, challenge: string, bend: Bend): Buffer {
    return Buffer.from(
      JSON.stringify({ type: bend.type ?? type, challenge: bend.challenge ?? challenge, origin: bend.origin ?? this.#origin, crossOrigin: bend.crossOrigin ?? false }),
    );
  }

  #authData(rpId: string, flags: number, counter: number, attested: boolean): Buffer {
    const c = Buffer.alloc(4);
    c.writeUInt32BE(counter >>> 0);
    const parts: Buffer[] = [sha256(rpId), Buffer.from([flags]), c];
    if (attested) {
      const len = Buffer.alloc(2);
      len.writeUInt16BE(this.credentialId.length);
      parts.push(this.aaguid, len, this.credentialId, this.#cose);
    }
    return Buffer.concat(parts);
  }

  /** navigator.credentials.create(): a RegistrationResponseJSON. */
  register(options: CreationOptions, bend: Bend = {}) {
    const rpId = bend.rpId ?? options.rp.id!;
    this.userHandle = options.user.id;
    const counter = bend.counter ?? this.counter;
    const authData = this.#authData(rpId, bend.flags ?? this.#flags(FLAG_AT), counter, true);
    const attestationObject = cbor(
      new Map<Cbor, Cbor>([
        ['fmt', 'none'],
        ['attStmt', new Map()],
        ['authData', authData],
      ]),
    );
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      authenticatorAttachment: 'cross-platform',
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64u(this.#clientData('webauthn.create', options.challenge, bend)),
        attestationObject: b64u(attestationObject),
        transports: ['usb'],
      },
    };
  }

  /** navigator.credentials.get(): an AuthenticationResponseJSON; the counter moves on unless bent. */
  assert(options: RequestOptions, bend: Bend = {}) {
    const rpId = bend.rpId ?? options.rpId!;
    const counter = bend.counter ?? ++this.counter;
    const authData = this.#authData(rpId, bend.flags ?? this.#flags(0), counter, false);
    const clientDataJSON = this.#clientData('webauthn.get', options.challenge, bend);
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), this.#key);
    return {
      id: this.id,
      rawId: this.id,
      type: 'public-key',
      authenticatorAttachment: 'cross-platform',
      clientExtensionResults: {},
      response: {
        clientDataJSON: b64u(clientDataJSON),
        authenticatorData: b64u(authData),
        signature: b64u(signature),
        userHandle: bend.userHandle ?? this.userHandle,
      },
    };
  }
}

/** The options a page put in data-options of its form[data-webauthn]. */
export function pageOptions<T = any>(html: string, kind: 'get' | 'create'): T {
  const m = new RegExp(`<form [^>]*data-webauthn="${kind}" data-options="([^"]*)"`).exec(html);
  if (!m) throw new Error(`no form[data-webauthn=${kind}] on the page`);
  const json = m[1].replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
  return JSON.parse(json) as T;
}
