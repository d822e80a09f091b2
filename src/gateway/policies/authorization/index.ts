// Authorization unit: may this caller use this route? Scopes (all-of or
// any-of), roles (all-of) and MFA, from what authentication established.
// 403 names `insufficient_scope` where that is the reason.
import { z } from 'zod';
import type { Policy } from '../policy.ts';
import type { RouteAuthObject } from '../authentication/index.ts';
import { InsufficientScope, AccessDenied } from '../../../shared/errors.ts';

export type AuthorizationConfig = RouteAuthObject;

export interface AuthorizationState {
  realm: string;
  scopes: { mode: 'all' | 'any'; list: readonly string[] } | undefined;
  roles: readonly string[] | undefined;
  mfa: boolean;
}

/** What counts as a second factor in `amr` (RFC 8176) or `acr`. */
const MFA_AMR = new Set(['mfa', 'otp', 'hwk', 'swk', 'sms']);
const MFA_ACR = new Set(['urn:gatehouse:acr:mfa']);

const policy: Policy<AuthorizationConfig, AuthorizationState> = {
  id: 'authorization',
  phase: 'authorize',
  schema: z.custom<AuthorizationConfig>(),
  provision(config, ctx) {
    const s = config.scopes;
    return {
      realm: ctx.zone,
      scopes:
        s === undefined ? undefined : Array.isArray(s) ? { mode: 'all', list: s } : 'all' in s ? { mode: 'all', list: s.all } : { mode: 'any', list: s.any },
      roles: config.roles,
      mfa: config.mfa === 'required',
    };
  },
  onRequest(ex, s) {
    const id = ex.identity;
    if (!id) return AccessDenied('no authenticated caller');
    if (s.scopes) {
      const ok = s.scopes.mode === 'all' ? s.scopes.list.every((x) => id.scopes.has(x)) : s.scopes.list.some((x) => id.scopes.has(x));
      if (!ok) return InsufficientScope(s.realm, s.scopes.list.join(' '));
    }
    if (s.roles && !s.roles.every((r) => id.roles.has(r))) return AccessDenied('the caller lacks a role this route needs');
    if (s.mfa && !(id.kind === 'user' && ((id.acr !== undefined && MFA_ACR.has(id.acr)) || id.amr.some((a) => MFA_AMR.has(a)))))
      return AccessDenied('this route needs a user who signed in with a second factor');
    return undefined;
  },
};

export default policy;
