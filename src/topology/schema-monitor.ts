// The `monitor:` section: what the control plane does with the security
// events every enforcement point sends it (src/monitor). Absent: the defaults
// below — events are kept for a week, both detectors quarantine.
import { z } from 'zod';
import { Cidr } from './primitives.ts';

const duration = (fallback: string) =>
  z
    .string()
    .regex(/^\d{1,6}(s|m|h|d)$/, 'a duration such as 30s, 5m, 2h or 1d')
    .default(fallback);

/** One detector: a leaky bucket per client address (CrowdSec's scenarios are the model). */
const Detector = (d: { threshold: number; windowSeconds: number; quarantineFor: string }, what: string) =>
  z
    .object({
      enabled: z.boolean().default(true).describe('false: the detector does not run'),
      shadow: z.boolean().default(false).describe('true: what it would quarantine is logged as an event, nothing is quarantined'),
      threshold: z.number().int().min(2).max(100_000).default(d.threshold).describe(`${what} from one source within the window that trigger it`),
      windowSeconds: z.number().int().min(1).max(3600).default(d.windowSeconds).describe('the sliding window'),
      quarantineFor: duration(d.quarantineFor).describe('how long the source is quarantined at every gateway'),
    })
    .strict()
    .default({ enabled: true, shadow: false, threshold: d.threshold, windowSeconds: d.windowSeconds, quarantineFor: d.quarantineFor });

export const MonitorConfig = z
  .object({
    retentionHours: z.number().int().min(1).max(2160).default(168).describe('how long security events are kept (default a week)'),
    exempt: z
      .array(Cidr)
      .default([])
      .describe('client networks no detector quarantines (your own monitoring, a load balancer); empty: none'),
    detectors: z
      .object({
        scan: Detector({ threshold: 5, windowSeconds: 10, quarantineFor: '5m' }, 'distinct paths answered 400, 404 or 405'),
        stuffing: Detector({ threshold: 10, windowSeconds: 60, quarantineFor: '10m' }, 'refused credentials (401)'),
      })
      .strict()
      .default({
        scan: { enabled: true, shadow: false, threshold: 5, windowSeconds: 10, quarantineFor: '5m' },
        stuffing: { enabled: true, shadow: false, threshold: 10, windowSeconds: 60, quarantineFor: '10m' },
      })
      .describe('detectors run by the control plane on the events it receives'),
  })
  .strict();
export type MonitorConfig = z.infer<typeof MonitorConfig>;
