// The monitor (issue 16): security events, detectors and the quarantines the
// control plane distributes. Public API.
export { openQuarantineStore, checkQuarantine, parseDuration, QUARANTINE_SCOPES, MAX_QUARANTINE_MS, type QuarantineStore, type QuarantineRequest, type QuarantineScope } from './quarantine-store.ts';
export { EventInput, EVENT_SCHEMA, EVENT_TYPES, EVENTS_BY_SENDER, MAX_BATCH_BYTES, MAX_BATCH_EVENTS, boundedFields, type EventFields, type EventType, type SecurityEvent } from './event.ts';
export { openEventStore, type EventStore, type EventQuery } from './event-store.ts';
export { createDetectors, type Detection, type Detectors, type DetectorName } from './detectors.ts';
export { exportMonitoring, alertRules, dashboardQueries, type MonitoringFiles } from './export-monitoring.ts';
