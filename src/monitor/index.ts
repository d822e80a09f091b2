// The monitor (issue 16): security decisions the control plane distributes. Public API.
export { openQuarantineStore, checkQuarantine, parseDuration, QUARANTINE_SCOPES, MAX_QUARANTINE_MS, type QuarantineStore, type QuarantineRequest, type QuarantineScope } from './quarantine-store.ts';
