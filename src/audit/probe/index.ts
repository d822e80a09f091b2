// gatehouse probe: an active, bounded attack run against a live deployment.
export { runProbe, exitCodeOf, FAMILIES } from './run.ts';
export { planFromEndpoints, planFromTarget } from './plan.ts';
export { formatReport, FORMATS, type Format } from './report.ts';
export { DEFAULT_LIMITS, type ProbePlan, type ProbeReport, type CheckResult, type ProbeLimits } from './types.ts';
export { loadAcceptances, applyAcceptances, type Acceptance } from './accept.ts';
