// Detectors the control plane runs on the events it receives, each a sliding
// window per client address (CrowdSec's leaky buckets are the model):
//   scan      distinct paths refused 400/404/405 from one source
//             (http-scan-uniques_404: 5 distinct paths within 10 s)
//   stuffing  refused credentials (401) from one source (fail2ban's
//             maxretry within findtime)
// A detector that fires is answered with a quarantine of the source for its
// `quarantineFor` (or, in shadow mode, only a `detection` event); the source's
// window starts again. Sources in `exempt` are never quarantined.
import { compileCidrs } from '../shared/address.ts';
import type { MonitorConfig } from '../topology/schema-monitor.ts';
import type { SecurityEvent } from './event.ts';
import { parseDuration } from './quarantine-store.ts';

export type DetectorName = 'scan' | 'stuffing';

export interface Detection {
  detector: DetectorName;
  source: string;
  count: number;
  windowSeconds: number;
  shadow: boolean;
  quarantineForMs: number;
}

/** Tracked sources per detector, at most (the oldest are forgotten first). */
const MAX_SOURCES = 50_000;

export interface Detectors {
  observe(event: SecurityEvent, now: number): Detection | undefined;
}

export function createDetectors(config: () => MonitorConfig): Detectors {
  // per detector: source → (key → last seen ms)
  const windows: Record<DetectorName, Map<string, Map<string, number>>> = { scan: new Map(), stuffing: new Map() };
  let exemptFor: readonly string[] | undefined;
  let exempt: (a: string) => boolean = () => false;

  function bump(name: DetectorName, source: string, key: string, now: number): Detection | undefined {
    const d = config().detectors[name];
    if (!d.enabled) return undefined;
    const all = windows[name];
    let seen = all.get(source);
    if (!seen) {
      if (all.size >= MAX_SOURCES) all.delete(all.keys().next().value as string);
      all.set(source, (seen = new Map()));
    }
    seen.set(key, now);
    const oldest = now - d.windowSeconds * 1000;
    for (const [k, t] of seen) if (t < oldest) seen.delete(k);
    if (seen.size < d.threshold) return undefined;
    all.delete(source); // it fired: the window starts again
    return { detector: name, source, count: seen.size, windowSeconds: d.windowSeconds, shadow: d.shadow, quarantineForMs: parseDuration(d.quarantineFor) };
  }

  return {
    observe(e, now) {
      if (e.type !== 'request_refused' || !e.source) return undefined;
      const c = config();
      if (exemptFor !== c.exempt) {
        exemptFor = c.exempt;
        exempt = compileCidrs(c.exempt);
      }
      if (exempt(e.source)) return undefined;
      if ((e.status === 404 || e.status === 400 || e.status === 405) && e.path) return bump('scan', e.source, e.path, now);
      // each refused credential counts once: the event id is the key
      if (e.status === 401) return bump('stuffing', e.source, e.id, now);
      return undefined;
    },
  };
}
