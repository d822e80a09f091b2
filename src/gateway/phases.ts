// The request path of a gateway, in order. Every request — HTTP/1.1, HTTP/2,
// a CORS preflight, a WebSocket upgrade — is one GatewayExchange walked through
// this one list by this one runner; nothing reaches an upstream without having
// passed every phase before `proxy`.
//
//   hygiene       framing, headers, request id, canonical path, Host
//   route         route and method; body limit from the declared length
//   cors          a preflight is answered here (nothing further runs)
//   ip            ┐
//   rate          │ the route's policy units (policies/registry.ts), each
//   authenticate  │ returning a decision; the first refusal not in shadow
//   quarantine    │ decisions of the control plane: source, client, subject
//   authorize     │ mode decides
//   cedar         │
//   contract      ┘
//   identity      credentials stripped, the gateway's identity token added
//   proxy         the upstream: a request, or an upgrade tunnel
//   respond       always last, refused or not: metrics and the access log
//
// A phase returns undefined (go on), a GatehouseError (refuse: the problem is
// written and the runner jumps to `respond`), ANSWERED (the phase answered
// itself) or a promise of one of those. Everything stays synchronous while the
// phases answer from memory (cached tokens, counters).
import { asProblem } from '../shared/problem.ts';
import type { GatehouseError } from '../shared/errors.ts';
import type { Phase } from './policies/policy.ts';
import type { ChainUnit } from './policies/chain.ts';
import type { GatewayExchange } from './exchange.ts';
import { hygiene, route, cors } from './phases/request.ts';
import { identity } from './phases/identity.ts';
import { quarantine } from './phases/quarantine.ts';
import { proxy } from './phases/proxy.ts';
import { refuse, respond } from './phases/respond.ts';
import { ANSWERED, type Outcome, type PhaseRun } from './phases/outcome.ts';

/** The route's policy units of one phase, in registry order. */
function policies(phase: Phase): PhaseRun {
  return (ex) => {
    const units = ex.chain?.phases[phase];
    return units === undefined ? undefined : runUnits(ex, units, 0);
  };
}

export const PHASES: readonly { name: string; run: PhaseRun }[] = [
  { name: 'hygiene', run: hygiene },
  { name: 'route', run: route },
  { name: 'cors', run: cors },
  { name: 'ip', run: policies('ip') },
  { name: 'rate', run: policies('rate') },
  { name: 'authenticate', run: policies('authenticate') },
  { name: 'quarantine', run: quarantine },
  { name: 'authorize', run: policies('authorize') },
  { name: 'cedar', run: policies('cedar') },
  { name: 'contract', run: policies('contract') },
  { name: 'identity', run: identity },
  { name: 'proxy', run: proxy },
  { name: 'respond', run: respond },
];

const RESPOND = PHASES.length - 1;

/** Walk the phases from `from`; whatever happens, the request ends in `respond`. */
export function runPipeline(ex: GatewayExchange, from = 0): void {
  for (let i = from; i < RESPOND; i++) {
    let outcome: Outcome | Promise<Outcome>;
    try {
      outcome = PHASES[i].run(ex);
    } catch (error) {
      outcome = asProblem(error);
    }
    if (outcome === undefined) continue;
    if (outcome instanceof Promise) {
      outcome.then(
        (o) => (o === undefined ? runPipeline(ex, i + 1) : settle(ex, o)),
        (error: unknown) => settle(ex, asProblem(error)),
      );
      return;
    }
    settle(ex, outcome);
    return;
  }
  respond(ex);
}

function settle(ex: GatewayExchange, outcome: GatehouseError | typeof ANSWERED): void {
  try {
    if (outcome !== ANSWERED) refuse(ex, outcome);
  } finally {
    respond(ex);
  }
}

/** Run `units` from `from`; the first refusal of a unit not in shadow mode decides. */
function runUnits(ex: GatewayExchange, units: readonly ChainUnit[], from: number): Outcome | Promise<Outcome> {
  for (let i = from; i < units.length; i++) {
    const u = units[i];
    const decision = u.onRequest(ex, u.state);
    if (decision instanceof Promise)
      return decision.then((d) => {
        if (d !== undefined) {
          if (!u.shadow) return d;
          shadowed(ex, u, d);
        }
        return runUnits(ex, units, i + 1);
      });
    if (decision === undefined) continue;
    if (!u.shadow) return decision;
    shadowed(ex, u, decision);
  }
  return undefined;
}

/** Shadow mode, for every unit alike: counted and logged as what would have been refused. */
function shadowed(ex: GatewayExchange, unit: ChainUnit, denial: GatehouseError): void {
  ex.ctx.metrics.refused.inc({ reason: `shadow_${denial.code}` });
  ex.ctx.logger.info({ request_id: ex.requestId, policy: unit.id, code: denial.code }, 'shadow mode: would deny');
}
