// Local users of a zone: argon2id password hashes, TOTP secrets sealed under
// the key-encryption key, an admin lock, and the last accepted TOTP time step
// (so a code is accepted once per step).
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
  mfa: boolean;
  claims: Record<string, unknown>;
}

const USERNAME = /^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$/;
export const MAX_PASSWORD = 1024;

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
  }): Promise<{ id: string; username: string; password: string; totp_secret?: string; otpauth_uri?: string }> {
    if (!USERNAME.test(input.username)) throw new UserError('username is 1-128 letters, digits and . _ @ + -');
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
        claims: JSON.stringify(input.claims ?? {}),
        created_at: this.#now(),
      })
      .execute();
    return {
      id,
      username: input.username.toLowerCase(),
      password,
      ...(totpSecret ? { totp_secret: totpSecret, otpauth_uri: this.#uri(input.username, totpSecret) } : {}),
    };
  }

  #uri(username: string, secret: string): string {
    return generateURI({ issuer: this.#issuerLabel, label: username, secret });
  }

  async list(): Promise<UserRecord[]> {
    const rows = await this.#db.selectFrom('users').selectAll().orderBy('username').execute();
    return rows.map((r) => this.#record(r));
  }

  #record(r: Database['users']): UserRecord {
    return {
      id: r.id,
      username: r.username,
      locked: Number(r.locked) === 1,
      mfa: r.totp_secret !== null,
      claims: JSON.parse(r.claims) as Record<string, unknown>,
    };
  }

  async byId(id: string): Promise<UserRecord | undefined> {
    const r = await this.#db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirst();
    return r ? this.#record(r) : undefined;
  }

  async byUsername(username: string): Promise<UserRecord | undefined> {
    const r = await this.#db.selectFrom('users').selectAll().where('username', '=', username.toLowerCase()).executeTakeFirst();
    return r ? this.#record(r) : undefined;
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
    const r = USERNAME.test(username)
      ? await this.#db.selectFrom('users').selectAll().where('username', '=', name).executeTakeFirst()
      : undefined;
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
