// cedar unit: fine-grained authorization in Cedar (https://www.cedarpolicy.com).
// The policies are parsed and validated (strict mode) against the entity model
// below when the config loads, then kept pre-parsed inside the Cedar engine; a
// request only builds its principal, resource and context and asks for a
// decision. Deny by default: no matching permit refuses, a forbid wins, and a
// request Cedar cannot evaluate, or a policy that fails to evaluate, refuses
// (stricter than Cedar, which skips that policy: a skipped forbid would allow).
//
// Entity model (namespace Gatehouse):
//   principal  User::"<sub>" | Client::"<client id>" | Consumer::"<consumer>" by identity kind,
//              Anonymous::"anonymous" when nobody authenticated; attributes
//              scopes: Set<String>, roles: Set<String>, mfa: Bool, issuer: String ("" when the
//              credential has none; anonymous: empty sets, false, ""), users also client?: String
//   action     Action::"<METHOD>" (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS)
//   resource   Route::"<route name>" { path: the canonical path, service, zone }
//   context    { ip: ipaddr (IPv4-mapped IPv6 is the IPv4 address), time: Long epoch seconds,
//                hour: Long 0-23 UTC, mfa: Bool, method: String, path: String }
// Time is the request's own `now` (exchange.now, from the gateway's injected
// clock, read once per request), so rate limits and Cedar see the same instant.
//
// Why validate: a forbid with a misspelt attribute would never apply. Strict
// validation refuses such a policy at load time rather than at every request.
// Optional attributes (a user's `client`) need a `principal has client` guard.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';
import {
  validate,
  preparsePolicySet,
  preparseSchema,
  statefulIsAuthorized,
  type DetailedError,
  type EntityJson,
  type StatefulAuthorizationCall,
} from '@cedar-policy/cedar-wasm/nodejs';
import type { Policy, Exchange, Identity } from '../policy.ts';
import type { Clock } from '../../../shared/clock.ts';
import type { Logger } from '../../../shared/logger.ts';
import { AccessDenied } from '../../../shared/errors.ts';
import { ConfigError } from '../../../topology/config-error.ts';
import { ALL_METHODS } from '../../../topology/schema.ts';
import { normaliseAddress } from '../../../shared/address.ts';
import { CedarConfig, isPolicyFile } from './schema.ts';

export type Config = CedarConfig;

export interface State {
  /** Id of the pre-parsed policy set inside the Cedar engine (a content hash: reloads reuse it). */
  policySetId: string;
  clock: Clock;
  logger: Logger;
}

const CALLER = 'scopes: Set<String>, roles: Set<String>, mfa: Bool, issuer: String';

/** The entity model, as a Cedar schema; policies are validated against it. */
export const CEDAR_SCHEMA = `namespace Gatehouse {
  entity User = { ${CALLER}, client?: String };
  entity Client, Consumer, Anonymous = { ${CALLER} };
  entity Route = { path: String, service: String, zone: String };
  type RequestContext = { ip: ipaddr, time: Long, hour: Long, mfa: Bool, method: String, path: String };
  action ${ALL_METHODS.map((m) => JSON.stringify(m)).join(', ')} appliesTo {
    principal: [User, Client, Consumer, Anonymous],
    resource: [Route],
    context: RequestContext,
  };
}`;
const SCHEMA_ID = 'gatehouse:' + createHash('sha256').update(CEDAR_SCHEMA).digest('hex');

/** What counts as a second factor: the same rule as the authorization unit's `mfa: required`. */
const MFA_AMR = new Set(['mfa', 'otp', 'hwk', 'swk', 'sms']);
const MFA_ACR = new Set(['urn:gatehouse:acr:mfa']);
const hasMfa = (id: Identity) =>
  id.kind === 'user' && ((id.acr !== undefined && MFA_ACR.has(id.acr)) || id.amr.some((a) => MFA_AMR.has(a)));

const PRINCIPAL_TYPE = { user: 'Gatehouse::User', client: 'Gatehouse::Client', consumer: 'Gatehouse::Consumer' } as const;
const ANONYMOUS: EntityJson = {
  uid: { type: 'Gatehouse::Anonymous', id: 'anonymous' },
  attrs: { scopes: [], roles: [], mfa: false, issuer: '' },
  parents: [],
};

/** Byte offset (Cedar's source locations) → 1-based line and column. */
function lineColumn(text: string, offset: number): { line: number; column: number } {
  const before = Buffer.from(text, 'utf8').subarray(0, offset).toString('utf8');
  const lines = before.split('\n');
  return { line: lines.length, column: lines[lines.length - 1].length + 1 };
}

/**
 * Each problem once, at its place in the source, in source order. The
 * validator repeats a problem for every principal type and action it checked;
 * one message per place is kept.
 */
function issuesOf(errors: readonly DetailedError[], text: string) {
  const seen = new Set<string>();
  const out: { line: number; column: number; message: string }[] = [];
  // the validator's order varies from run to run; sort so the kept message does not
  const sorted = [...errors].sort(
    (a, b) => (a.sourceLocations?.[0]?.start ?? 0) - (b.sourceLocations?.[0]?.start ?? 0) || a.message.localeCompare(b.message),
  );
  for (const e of sorted) {
    const loc = e.sourceLocations?.[0];
    // without a place, the policy id (policy0 is the first policy) is the only pointer
    const message =
      (loc ? e.message.replace(/^for policy `[^`]*`, /, '') : e.message) +
      (loc?.label ? ` (${loc.label})` : '') +
      (e.help ? `; ${e.help}` : '');
    const key = loc ? `@${loc.start}` : message;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push({ ...lineColumn(text, loc?.start ?? 0), message });
  }
  return out;
}

/** Parse and validate; throw a config error naming the file (or "inline Cedar policies"), line and column. */
function compile(text: string, file: string | undefined, logger: Logger): string {
  const fail = (errors: readonly DetailedError[]): never => {
    const issues = issuesOf(errors, text);
    if (file) throw new ConfigError(issues.map((i) => ({ file, line: i.line, column: i.column, path: '', message: i.message })));
    throw new Error(issues.map((i) => `inline Cedar policies ${i.line}:${i.column}: ${i.message}`).join('\n'));
  };
  const result = validate({ schema: CEDAR_SCHEMA, policies: { staticPolicies: text }, validationSettings: { mode: 'strict' } });
  if (result.type === 'failure') return fail(result.errors);
  if (result.validationErrors.length > 0) return fail(result.validationErrors.map((v) => v.error));
  for (const w of issuesOf([...result.validationWarnings.map((v) => v.error), ...result.otherWarnings], text))
    logger.warn({ unit: 'cedar', file: file ?? 'inline', line: w.line, column: w.column }, `cedar: ${w.message}`);
  const id = 'gatehouse:' + createHash('sha256').update(text).digest('hex');
  const parsed = preparsePolicySet(id, { staticPolicies: text });
  if (parsed.type === 'failure') return fail(parsed.errors);
  return id;
}

/** The Cedar request for this exchange (the entity model above). Undefined: the client address is not an IP. */
export function cedarRequest(ex: Exchange, now: number, policySetId: string): StatefulAuthorizationCall | undefined {
  const address = normaliseAddress(ex.clientAddress);
  if (isIP(address) === 0) return undefined;
  const id = ex.identity;
  const mfa = id !== undefined && hasMfa(id);
  let principal: EntityJson = ANONYMOUS;
  if (id) {
    const attrs: EntityJson['attrs'] = { scopes: [...id.scopes], roles: [...id.roles], mfa, issuer: id.issuer ?? '' };
    if (id.kind === 'user' && id.clientId !== undefined) attrs.client = id.clientId;
    const name = id.kind === 'client' ? (id.clientId ?? id.sub) : id.kind === 'consumer' ? (id.consumer ?? id.sub) : id.sub;
    principal = { uid: { type: PRINCIPAL_TYPE[id.kind], id: name }, attrs, parents: [] };
  }
  const resource: EntityJson = {
    uid: { type: 'Gatehouse::Route', id: ex.route.name },
    attrs: { path: ex.path, service: ex.route.config.service, zone: ex.zone },
    parents: [],
  };
  return {
    principal: principal.uid,
    action: { type: 'Gatehouse::Action', id: ex.method },
    resource: resource.uid,
    context: {
      ip: { __extn: { fn: 'ip', arg: address } },
      time: Math.floor(now / 1000),
      hour: new Date(now).getUTCHours(),
      mfa,
      method: ex.method,
      path: ex.path,
    },
    entities: [principal, resource],
    preparsedPolicySetId: policySetId,
    // the request is checked against the model the policies were validated with
    preparsedSchemaName: SCHEMA_ID,
    validateRequest: true,
  };
}

export default {
  id: 'cedar',
  phase: 'cedar',
  schema: CedarConfig,
  async provision(config, ctx): Promise<State> {
    let text = config.policies;
    let file: string | undefined;
    if (isPolicyFile(config.policies)) {
      file = path.resolve(ctx.topology.dir, config.policies);
      try {
        text = await readFile(file, 'utf8');
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code ?? 'unreadable';
        throw new ConfigError([{ file, line: 1, column: 1, path: '', message: `cannot read the Cedar policy file (${code})` }]);
      }
    }
    const schema = preparseSchema(SCHEMA_ID, CEDAR_SCHEMA);
    if (schema.type === 'failure') throw new Error(`cedar: the built-in schema does not parse: ${schema.errors[0]?.message}`);
    return { policySetId: compile(text, file, ctx.logger), clock: ctx.clock, logger: ctx.logger };
  },
  onRequest(ex, state) {
    const call = cedarRequest(ex, ex.now, state.policySetId);
    if (!call) {
      state.logger.warn({ unit: 'cedar', requestId: ex.requestId }, 'cedar: the client address is not an IP address; refused');
      return AccessDenied('denied by policy');
    }
    const answer = statefulIsAuthorized(call);
    if (answer.type === 'failure') {
      state.logger.warn(
        { unit: 'cedar', requestId: ex.requestId, errors: answer.errors.map((e) => e.message) },
        'cedar: the request could not be evaluated; refused',
      );
      return AccessDenied('denied by policy');
    }
    const { decision, diagnostics } = answer.response;
    // Cedar skips a policy that fails to evaluate (an overflow, say), so a broken
    // forbid would let the request through; here any such failure refuses it.
    if (diagnostics.errors.length > 0) {
      state.logger.warn(
        { unit: 'cedar', requestId: ex.requestId, errors: diagnostics.errors.map((e) => `${e.policyId}: ${e.error.message}`) },
        'cedar: policies failed to evaluate; refused',
      );
      return AccessDenied('denied by policy');
    }
    if (state.logger.isLevelEnabled('debug'))
      // policy ids are Cedar's: policy0 is the first policy in the text
      state.logger.debug({ unit: 'cedar', requestId: ex.requestId, decision, policies: diagnostics.reason }, 'cedar decision');
    return decision === 'allow' ? undefined : AccessDenied('denied by policy');
  },
} satisfies Policy<Config, State>;
