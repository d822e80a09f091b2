// Compiles the request contracts and Cedar policies of every route without
// starting anything, so `gatehouse validate` reports a broken OpenAPI
// document, JSON Schema or Cedar policy as the gateway would at start: with
// the file, line and field. Errors of one route never hide another's. It also
// finds route methods the target service's allow edges refuse from the gateway
// (warnings: see routeMethodWarnings).
import path from 'node:path';
import { ConfigError, formatPath, type ConfigIssue } from '../topology/config-error.ts';
import type { LoadedTopology } from '../topology/load.ts';
import { routeMethodGaps } from '../topology/resolve.ts';
import { systemClock } from '../shared/clock.ts';
import { createLogger } from '../shared/logger.ts';
import { createSharedResources } from './policies/policy.ts';
import validate from './policies/validate/index.ts';
import cedar from './policies/cedar/index.ts';

/** The issues of a unit that refused to provision on route `i` of `zone`. */
export function routeIssues(loaded: LoadedTopology, zone: string, i: number, error: unknown): ConfigIssue[] {
  if (error instanceof ConfigError) return [...error.issues];
  // a unit may name the field of the route it refuses (FieldError)
  const field = [...((error as { field?: (string | number)[] }).field ?? [])];
  const at = ['zones', zone, 'routes', i, ...field];
  return [{ file: loaded.file, ...(loaded.locate?.(at) ?? { line: 1, column: 1 }), path: formatPath(at), message: (error as Error).message }];
}

/** Throws one ConfigError with every contract or Cedar policy that does not compile. */
export async function checkContracts(loaded: LoadedTopology): Promise<void> {
  const issues: ConfigIssue[] = [];
  const shared = createSharedResources();
  try {
    for (const [zone, z] of Object.entries(loaded.topology.zones)) {
      const ctx = { topology: loaded, zone, stateDir: '', clock: systemClock, logger: createLogger({ name: 'validate', level: 'silent' }), shared };
      for (const [i, route] of z.routes.entries()) {
        try {
          if (route.validate) await validate.provision({ contract: route.validate, route: { path: route.path, methods: route.methods } }, ctx);
          if (route.cedar) await cedar.provision(route.cedar, ctx);
        } catch (error) {
          issues.push(...routeIssues(loaded, zone, i, error));
        }
      }
    }
  } finally {
    await shared.close();
  }
  // routes sharing one document report its problems once
  const seen = new Set<string>();
  const unique: ConfigIssue[] = [];
  for (const i of issues) {
    const key = `${i.file}:${i.line}:${i.column}:${i.path}:${i.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    unique.push(i);
  }
  if (unique.length > 0) throw new ConfigError(unique);
}

/**
 * Route methods the target service refuses from the gateway (a certain 403 for
 * a request the gateway took and advertised in Allow), positioned at the
 * route's methods. Warnings, not errors: a GET route always answers HEAD (the
 * router adds it), so the only way to keep HEAD from a handler that does not
 * take it safely is the service's edge, and that refusal fails closed. `gatehouse
 * validate --strict` makes them errors (for CI).
 */
export function routeMethodWarnings(loaded: LoadedTopology): ConfigIssue[] {
  const shown = path.relative(process.cwd(), loaded.file);
  return routeMethodGaps(loaded.topology).map((gap) => ({
    file: shown.startsWith('..') || path.isAbsolute(shown) ? loaded.file : shown,
    ...(loaded.locate?.(gap.path) ?? { line: 1, column: 1 }),
    path: formatPath(gap.path),
    message: gap.message,
  }));
}
