// Audit events as JSON lines: who did what, when, from where. Never a token,
// secret, password, one-time code, session id or opaque token id; callers pass
// only the fields listed in AuditFields, and anything else is dropped here.
import { createWriteStream, type WriteStream } from 'node:fs';
import { maskText } from '../shared/mask.ts';

export type AuditEvent =
  | 'login.success'
  | 'login.failure'
  | 'mfa.challenge'
  | 'mfa.success'
  | 'mfa.failure'
  | 'lockout'
  | 'token.issued'
  | 'token.refreshed'
  | 'token.exchanged'
  | 'token.revoked'
  | 'token.reuse_detected'
  | 'grant.revoked'
  | 'key.rotated'
  | 'key.published'
  | 'client.added'
  | 'client.updated'
  | 'client.removed'
  | 'user.added'
  | 'user.locked'
  | 'user.mfa_reset'
  | 'logout'
  | 'webauthn.registered'
  | 'webauthn.refused'
  | 'webauthn.removed'
  | 'revocations.refused'
  | 'client.auth_failure'
  | 'token.exchange_refused'
  | 'token.descendants_revoked'
  | 'consent.granted'
  | 'consent.refused'
  | 'consent.revoked'
  | 'session.ended'
  | 'federation.started'
  | 'federation.success'
  | 'federation.failure';

export interface AuditFields {
  client_id?: string;
  sub?: string;
  username?: string;
  source?: string;
  grant_type?: string;
  scope?: string;
  aud?: string | string[];
  /** id of a JWT access token (not a credential) */
  jti?: string;
  kid?: string;
  reason?: string;
  amr?: string[];
  budget?: string;
  until?: string;
  actor?: string;
  subject_issuer?: string;
  grant_id?: string;
  /** a WebAuthn credential id (public, not a secret) */
  credential?: string;
  /** the name of a federation upstream */
  upstream?: string;
}

const ALLOWED = new Set<string>([
  'client_id', 'sub', 'username', 'source', 'grant_type', 'scope', 'aud', 'jti', 'kid', 'reason', 'amr', 'budget',
  'until', 'actor', 'subject_issuer', 'grant_id', 'credential', 'upstream',
]);

export interface Audit {
  (event: AuditEvent, fields?: AuditFields): void;
  close(): Promise<void>;
}

export function createAudit(options: {
  zone: string;
  file?: string;
  now: () => number;
  sink?: (line: Record<string, unknown>) => void;
}): Audit {
  let stream: WriteStream | undefined;
  if (options.file) stream = createWriteStream(options.file, { flags: 'a', mode: 0o600 });
  const audit = ((event: AuditEvent, fields: AuditFields = {}) => {
    const line: Record<string, unknown> = { time: new Date(options.now()).toISOString(), zone: options.zone, event };
    // values pass the one masker too (an e-mail as username, a secret pasted into a reason)
    for (const [k, v] of Object.entries(fields)) if (ALLOWED.has(k) && v !== undefined) line[k] = typeof v === 'string' ? maskText(v) : v;
    options.sink?.(line);
    stream?.write(JSON.stringify(line) + '\n');
  }) as Audit;
  audit.close = () =>
    new Promise<void>((resolve) => {
      if (!stream) return resolve();
      stream.end(() => resolve());
    });
  return audit;
}
