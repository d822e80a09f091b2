// The audit component's door: the posture lint of a topology (`gatehouse
// audit`). `gatehouse probe` lives in ./probe with its own door.
export { auditTopology, auditConfigError, type AuditReport, type Finding } from './audit-topology.ts';
export { formatAudit, AUDIT_FORMATS, type AuditFormat } from './format-audit.ts';
export { RULES, type Rule, type Severity } from './rules.ts';
