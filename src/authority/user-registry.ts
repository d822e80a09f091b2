// Local users of a zone: argon2id password hashes, TOTP secrets sealed under
// the key-encryption key, an admin lock, the last accepted TOTP time step
// (so a code is accepted once per step), and WebAuthn credentials (passkeys
// and security keys: public keys and signature counters, nothing secret).
import { randomBytes, randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { generateSecret, generateURI, verify as verifyTotp } from 'otplib';
import type { Database } from './db/schema.ts';
import type { Sealer } from './keys/key-encryption.ts';
import { hashPassword, verifyPassword, dummyHash } from './password-hash.ts';

export class UserError extends Error {
  readonly code = 'user_error';
}

export interface UserRecord {
  id: string;
  username: string;
  locked: boolean;
  /** has a second factor: TOTP or at least one WebAuthn credential */
  mfa: boolean;
  totp: boolean;
  /** number of WebAuthn credentials */
  passkeys: number;
  claims: Record<string, unknown>;
}

export interface PasskeyRecord {
  id: string;
  name: string;
  /** COSE public key */
  publicKey: Uint8Array;
  counter: number;
  transports: string[];
  deviceType: 'singleDevice' | 'multiDevice';
  backedUp: boolean;
  aaguid: string;
  createdAt: number;
  lastUsedAt: number | null;
}

type UserRow = Database['users'] & { passkeys: unknown };

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
export const MAX_PASSWORD = 1024;
/** A role (claims.roles, the gateway's `roles` rules): what a topology's role names and an upstream's groups look like. */
const ROLE = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/;
export const MAX_ROLES = 32;

/** Why `role` is no role name, or undefined when it is one. */
export function roleProblem(role: string): string | undefined {
  return ROLE.test(role) ? undefined : `role ${JSON.stringify(role.slice(0, 80))} is not 1-64 letters, digits and . _ : - (starting with a letter or digit)`;
}

function checkRoles(roles: readonly string[]): string[] {
  for (const r of roles) {
    const problem = roleProblem(r);
    if (problem) throw new UserError(problem);
  }
  const unique = [...new Set(roles)];
  if (unique.length > MAX_ROLES) throw new UserError(`a user has at most ${MAX_ROLES} roles`);
  return unique;
}

/** The user's roles as the claims hold them (strings only). */
export function rolesOf(claims: Record<string, unknown>): string[] {
  return Array.isArray(claims.roles) ? claims.roles.filter((r): r is string => typeof r === 'string') : [];
}

export class UserRegistry {
  readonly #db: Kysely<Database>;
  readonly #sealer: Sealer;
  readonly #now: () => number;
  readonly #issuerLabel: string;

  constructor(db: Kysely<Database>, sealer: Sealer, now: () => number, issuerLabel: string) {
    this.#db = db;
    this.#sealer = sealer;
    this.#now = now;
    this.#issuerLabel = issuerLabel;
  }

  /** Adds a user; returns the password (generated when not given) and the TOTP enrolment. */
  async add(input: {
    username: string;
    password?: string;
    totp?: boolean;
    claims?: Record<string, unknown>;
    /** Gatehouse roles (claims.roles); absent or empty: none */
    roles?: readonly string[];
  }): Promise<{ id: string; username: string; password: string; totp_secret?: string; otpauth_uri?: string; roles?: string[] }> {
    if (!USERNAME.test(input.username)) throw new UserError('username is 1-128 letters, digits and . _ @ + -');
    const roles = checkRoles(input.roles ?? []);
    const claims = { ...(input.claims ?? {}), ...(roles.length > 0 ? { roles } : {}) };
    const password = input.password ?? randomBytes(18).toString('base64url');
    if (password.length < 12 || password.length > MAX_PASSWORD) throw new UserError('a password is 12 to 1024 characters');
    const id = randomUUID();
    const totpSecret = input.totp === false ? undefined : generateSecret();
    const exists = await this.#db.selectFrom('users').select('id').where('username', '=', input.username.toLowerCase()).executeTakeFirst();
    if (exists) throw new UserError(`user ${input.username} already exists`);
    await this.#db
      .insertInto('users')
      .values({
        id,
        username: input.username.toLowerCase(),
        password_hash: await hashPassword(password),
        totp_secret: totpSecret ? this.#sealer.seal(totpSecret, `totp:${id}`) : null,
        totp_last_step: 0,
        locked: 0,
        claims: JSON.stringify(claims),
        created_at: this.#now(),
      })
      .execute();
    return {
      id,
      username: input.username.toLowerCase(),
      password,
      ...(roles.length > 0 ? { roles } : {}),
      ...(totpSecret ? { totp_secret: totpSecret, otpauth_uri: this.#uri(input.username, totpSecret) } : {}),
    };
  }

  #uri(username: string, secret: string): string {
    return generateURI({ issuer: this.#issuerLabel, label: username, secret });
  }

  /** users with their passkey count */
  #users() {
    return this.#db
      .selectFrom('users')
      .selectAll('users')
      .select((eb) =>
        eb
          .selectFrom('webauthn_credentials')
          .select(eb.fn.countAll().as('n'))
          .whereRef('webauthn_credentials.user_id', '=', 'users.id')
          .as('passkeys'),
      );
  }

  async list(): Promise<UserRecord[]> {
    const rows = await this.#users().orderBy('username').execute();
    return rows.map((r) => this.#record(r));
  }

  #record(r: UserRow): UserRecord {
    const passkeys = Number(r.passkeys ?? 0);
    return {
      id: r.id,
      username: r.username,
      locked: Number(r.locked) === 1,
      mfa: r.totp_secret !== null || passkeys > 0,
      totp: r.totp_secret !== null,
      passkeys,
      claims: JSON.parse(r.claims) as Record<string, unknown>,
    };
  }

  async byId(id: string): Promise<UserRecord | undefined> {
    const r = await this.#users().where('users.id', '=', id).executeTakeFirst();
    return r ? this.#record(r) : undefined;
  }

  async byUsername(username: string): Promise<UserRecord | undefined> {
    const r = await this.#users().where('users.username', '=', username.toLowerCase()).executeTakeFirst();
    return r ? this.#record(r) : undefined;
  }

  /** Replaces the user's claims (federation keeps the upstream's e-mail and mapped roles current). */
  async setClaims(id: string, claims: Record<string, unknown>): Promise<void> {
    await this.#db.updateTable('users').set({ claims: JSON.stringify(claims) }).where('id', '=', id).execute();
  }

  /**
   * Adds and removes roles of a user (removals after additions: a role named
   * in both is gone); the roles afterwards, or undefined when there is no such
   * user. Tokens issued from then on carry them (customize-token.ts).
   */
  async changeRoles(username: string, change: { add?: readonly string[]; remove?: readonly string[] }): Promise<string[] | undefined> {
    const add = checkRoles(change.add ?? []);
    const remove = new Set(checkRoles(change.remove ?? []));
    const user = await this.byUsername(username);
    if (!user) return undefined;
    // the roles held already are kept as they are (a federation upstream's mapped ones included)
    const roles = [...new Set([...rolesOf(user.claims), ...add])].filter((r) => !remove.has(r));
    if (roles.length > MAX_ROLES) throw new UserError(`a user has at most ${MAX_ROLES} roles`);
    const { roles: _old, ...rest } = user.claims;
    await this.setClaims(user.id, roles.length > 0 ? { ...rest, roles } : rest);
    return roles;
  }

  // ---- WebAuthn credentials ----

  #passkey(r: Database['webauthn_credentials']): PasskeyRecord {
    return {
      id: r.id,
      name: r.name,
      publicKey: new Uint8Array(Buffer.from(r.public_key, 'base64url')),
      counter: Number(r.counter),
      transports: JSON.parse(r.transports) as string[],
      deviceType: r.device_type === 'multiDevice' ? 'multiDevice' : 'singleDevice',
      backedUp: Number(r.backed_up) === 1,
      aaguid: r.aaguid,
      createdAt: Number(r.created_at),
      lastUsedAt: r.last_used_at === null ? null : Number(r.last_used_at),
    };
  }

  async passkeys(userId: string): Promise<PasskeyRecord[]> {
    const rows = await this.#db.selectFrom('webauthn_credentials').selectAll().where('user_id', '=', userId).orderBy('created_at').execute();
    return rows.map((r) => this.#passkey(r));
  }

  /** The credential with this id and its owner, whoever that is. */
  async passkeyById(credentialId: string): Promise<{ userId: string; passkey: PasskeyRecord } | undefined> {
    if (credentialId.length === 0 || credentialId.length > 1400) return undefined;
    const r = await this.#db.selectFrom('webauthn_credentials').selectAll().where('id', '=', credentialId).executeTakeFirst();
    return r ? { userId: r.user_id, passkey: this.#passkey(r) } : undefined;
  }

  /** Stores a verified credential; false when that credential id is already registered (to anyone). */
  async addPasskey(userId: string, p: Omit<PasskeyRecord, 'createdAt' | 'lastUsedAt'>): Promise<boolean> {
    const r = await this.#db
      .insertInto('webauthn_credentials')
      .values({
        id: p.id,
        user_id: userId,
        public_key: Buffer.from(p.publicKey).toString('base64url'),
        counter: p.counter,
        transports: JSON.stringify(p.transports),
        device_type: p.deviceType,
        backed_up: p.backedUp ? 1 : 0,
        aaguid: p.aaguid,
        name: p.name,
        created_at: this.#now(),
        last_used_at: null,
      })
      .onConflict((oc) => oc.column('id').doNothing())
      .executeTakeFirst();
    return Number(r.numInsertedOrUpdatedRows ?? 0n) === 1;
  }

  /**
   * Moves the signature counter forward, only from the value the assertion
   * was checked against (compare-and-set): of two racing assertions one wins.
   */
  async advancePasskeyCounter(userId: string, credentialId: string, from: number, to: number): Promise<boolean> {
    const r = await this.#db
      .updateTable('webauthn_credentials')
      .set({ counter: to, last_used_at: this.#now() })
      .where('id', '=', credentialId)
      .where('user_id', '=', userId)
      .where('counter', '=', from)
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  async removePasskey(userId: string, credentialId: string): Promise<boolean> {
    const r = await this.#db.deleteFrom('webauthn_credentials').where('id', '=', credentialId).where('user_id', '=', userId).executeTakeFirst();
    return Number(r.numDeletedRows) === 1;
  }

  async removeAllPasskeys(userId: string): Promise<number> {
    const r = await this.#db.deleteFrom('webauthn_credentials').where('user_id', '=', userId).executeTakeFirst();
    return Number(r.numDeletedRows);
  }

  async setLocked(username: string, locked: boolean): Promise<boolean> {
    const r = await this.#db
      .updateTable('users')
      .set({ locked: locked ? 1 : 0 })
      .where('username', '=', username.toLowerCase())
      .executeTakeFirst();
    return Number(r.numUpdatedRows) === 1;
  }

  /** New TOTP secret (the old one stops working at once). */
  async resetMfa(username: string): Promise<{ totp_secret: string; otpauth_uri: string } | undefined> {
    const user = await this.byUsername(username);
    if (!user) return undefined;
    const secret = generateSecret();
    await this.#db
      .updateTable('users')
      .set({ totp_secret: this.#sealer.seal(secret, `totp:${user.id}`), totp_last_step: 0 })
      .where('id', '=', user.id)
      .execute();
    return { totp_secret: secret, otpauth_uri: this.#uri(username, secret) };
  }

  /**
   * Checks a password. Costs one argon2id verification whether or not the
   * user exists, so neither the answer nor the timing tells them apart.
   */
  async checkPassword(username: string, password: string): Promise<UserRecord | undefined> {
    const name = username.toLowerCase();
    const r = USERNAME.test(username) ? await this.#users().where('users.username', '=', name).executeTakeFirst() : undefined;
    const ok = await verifyPassword(password.slice(0, MAX_PASSWORD), r?.password_hash ?? (await dummyHash()));
    if (!r || !ok || Number(r.locked) === 1) return undefined;
    return this.#record(r);
  }

  /**
   * Checks a TOTP code (current or previous 30 s step). A step is accepted
   * once: the update is conditional on the step being newer than the last.
   */
  async checkTotp(userId: string, code: string): Promise<'ok' | 'invalid' | 'replayed' | 'no_mfa'> {
    const r = await this.#db.selectFrom('users').select(['totp_secret', 'totp_last_step']).where('id', '=', userId).executeTakeFirst();
    if (!r || r.totp_secret === null) return 'no_mfa';
    if (!/^\d{6}$/.test(code)) return 'invalid';
    const secret = this.#sealer.open(r.totp_secret, `totp:${userId}`).toString('utf8');
    const result = await verifyTotp({
      secret,
      token: code,
      epoch: Math.floor(this.#now() / 1000),
      epochTolerance: [30, 0],
    });
    if (!result.valid) return 'invalid';
    const step = (result as { timeStep: number }).timeStep;
    if (step <= Number(r.totp_last_step)) return 'replayed';
    const upd = await this.#db
      .updateTable('users')
      .set({ totp_last_step: step })
      .where('id', '=', userId)
      .where('totp_last_step', '<', step)
      .executeTakeFirst();
    return Number(upd.numUpdatedRows) === 1 ? 'ok' : 'replayed';
  }
}
