// The `monitor:` section: what the control plane does with the security
// events every enforcement point sends it (src/monitor). Absent: the defaults
// below — events are kept for a week, every detector but replay, ratio and
// volumetric (shadow: they record what they would do) quarantines, the web
// console is not served (it needs a zone to sign operators in and at least
// one operator).
import { isIP } from 'node:net';
import { z } from 'zod';
import { Cidr } from './primitives.ts';

const duration = (fallback: string) =>
  z
    .string()
    .regex(/^\d{1,6}(s|m|h|d)$/, 'a duration such as 30s, 5m, 2h or 1d')
    .default(fallback);

interface Defaults {
  threshold: number;
  windowSeconds: number;
  quarantineFor: string;
  shadow?: boolean;
}

/** One detector: a sliding window per key (CrowdSec's scenarios are the model); `extra`: fields of this detector alone, with their defaults. */
const Detector = <E extends z.ZodRawShape = {}>(d: Defaults, what: string, key: string, extra?: { shape: E; defaults: z.infer<z.ZodObject<E>> }) => {
  const fallback = { enabled: true, shadow: d.shadow ?? false, threshold: d.threshold, windowSeconds: d.windowSeconds, quarantineFor: d.quarantineFor, ...extra?.defaults };
  return z
    .object({
      enabled: z.boolean().default(true).describe('false: the detector does not run'),
      shadow: z
        .boolean()
        .default(fallback.shadow)
        .describe('true: what it would quarantine is logged as a detection event, nothing is quarantined'),
      threshold: z.number().int().min(2).max(100_000).default(d.threshold).describe(`${what} ${key} within the window that trigger it`),
      windowSeconds: z.number().int().min(1).max(3600).default(d.windowSeconds).describe('the sliding window'),
      quarantineFor: duration(d.quarantineFor).describe('how long the offender is quarantined at every enforcement point'),
      ...(extra?.shape ?? ({} as E)),
    })
    .strict()
    .default(fallback as never);
};

/** The volumetric detector: requests per interval of one client on one route, against its own EWMA baseline. */
const Volumetric = z
  .object({
    enabled: z.boolean().default(true).describe('false: the detector does not run'),
    shadow: z.boolean().default(true).describe('true (the default): a spike is logged as a detection event, nothing is quarantined'),
    intervalSeconds: z.number().int().min(1).max(3600).default(60).describe('the interval whose request count is compared with the baseline'),
    alpha: z.number().gt(0).lte(1).default(0.3).describe('weight of the newest interval in the baseline (EWMA)'),
    factor: z.number().min(1.5).max(1000).default(10).describe('a count above factor × baseline is a spike'),
    minRequests: z.number().int().min(1).max(10_000_000).default(100).describe('no spike below this many requests in an interval'),
    warmupIntervals: z.number().int().min(1).max(1000).default(5).describe('intervals seen before a key can fire (its baseline is learnt first)'),
    quarantineFor: duration('10m').describe('how long the client is quarantined'),
  })
  .strict()
  .default({ enabled: true, shadow: true, intervalSeconds: 60, alpha: 0.3, factor: 10, minRequests: 100, warmupIntervals: 5, quarantineFor: '10m' });

const Console = z
  .object({
    listen: z
      .string()
      .regex(/^(127\.0\.0\.1|\[::1\]|localhost|[0-9a-fA-F.:[\]]+):\d{1,5}$/, 'host:port')
      .default('127.0.0.1:0')
      .describe('where the console listens (plain HTTP: loopback only unless a TLS proxy fronts it); default a free loopback port'),
    zone: z
      .string()
      .optional()
      .describe("the zone whose authority signs operators in (authorization code + PKCE, the zone's MFA required); absent: the console is not served"),
    operators: z
      .array(z.string().min(1).max(128))
      .max(1000)
      .default([])
      .describe('usernames at that authority who may open the console; empty: nobody (deny by default)'),
    sessionMinutes: z.number().int().min(1).max(24 * 60).default(60).describe('how long a console session lasts after sign-in'),
  })
  .strict()
  .default({ listen: '127.0.0.1:0', operators: [], sessionMinutes: 60 });

export const MonitorConfig = z
  .object({
    retentionHours: z.number().int().min(1).max(2160).default(168).describe('how long security events are kept (default a week)'),
    storage: z
      .string()
      .regex(/^(?:sqlite|postgres(?:ql)?:\/\/\S+)$/, "storage is 'sqlite' or a postgres:// URL")
      .default('sqlite')
      .describe(
        "where the control plane keeps security events: 'sqlite', a database file in the state dir; postgres://… (`?schema=NAME` for a schema of its own), shared by replicas of the control plane. Read when the control plane starts",
      ),
    exempt: z
      .array(Cidr)
      .default([])
      .describe('client networks no detector quarantines (your own monitoring, a load balancer); empty: none'),
    detectors: z
      .object({
        scan: Detector({ threshold: 5, windowSeconds: 10, quarantineFor: '5m' }, 'distinct paths answered 400, 404 or 405', 'from one source'),
        stuffing: Detector({ threshold: 10, windowSeconds: 60, quarantineFor: '10m' }, 'refused credentials (401, failed sign-ins)', 'from one source', {
          shape: {
            distinctAccounts: z
              .number()
              .int()
              .min(2)
              .max(100_000)
              .default(5)
              .describe('distinct usernames whose sign-in failed from one source within the window that trigger it too (stuffing tries many accounts, each a few times)'),
          },
          defaults: { distinctAccounts: 5 },
        }),
        // shadow by default: whoever knows a username can fail on purpose, and the account's owner would be locked out
        ratio: Detector(
          { threshold: 10, windowSeconds: 600, quarantineFor: '15m', shadow: true },
          'failed sign-ins of one account (whatever their sources: a distributed cracking run)',
          'when they are at least `failureRatio` of its sign-in attempts',
          {
            shape: {
              failureRatio: z
                .number()
                .gt(0)
                .lte(1)
                .default(0.9)
                .describe('the share of failures among an account’s sign-in attempts in the window at which it fires (its owner signing in now and then keeps it below)'),
            },
            defaults: { failureRatio: 0.9 },
          },
        ),
        enumeration: Detector(
          { threshold: 20, windowSeconds: 60, quarantineFor: '10m' },
          'distinct object paths answered 403 or 404 on one templated route',
          'for one identity (the source where there is none)',
        ),
        // shadow by default: a phone moving from Wi-Fi to a mobile network is a second network too
        replay: Detector(
          { threshold: 2, windowSeconds: 3600, quarantineFor: '15m', shadow: true },
          'networks (IPv4 /24, IPv6 /64) or TLS fingerprints one token id (jti) is seen from',
          'within its lifetime',
        ),
        lateral: Detector({ threshold: 3, windowSeconds: 300, quarantineFor: '15m' }, 'distinct peers that refused a workload (edge denied)', 'for one workload'),
        volumetric: Volumetric,
      })
      .strict()
      .default({
        scan: { enabled: true, shadow: false, threshold: 5, windowSeconds: 10, quarantineFor: '5m' },
        stuffing: { enabled: true, shadow: false, threshold: 10, windowSeconds: 60, quarantineFor: '10m', distinctAccounts: 5 },
        ratio: { enabled: true, shadow: true, threshold: 10, windowSeconds: 600, quarantineFor: '15m', failureRatio: 0.9 },
        enumeration: { enabled: true, shadow: false, threshold: 20, windowSeconds: 60, quarantineFor: '10m' },
        replay: { enabled: true, shadow: true, threshold: 2, windowSeconds: 3600, quarantineFor: '15m' },
        lateral: { enabled: true, shadow: false, threshold: 3, windowSeconds: 300, quarantineFor: '15m' },
        volumetric: { enabled: true, shadow: true, intervalSeconds: 60, alpha: 0.3, factor: 10, minRequests: 100, warmupIntervals: 5, quarantineFor: '10m' },
      })
      .describe('detectors run by the control plane on the events it receives'),
    console: Console.describe('the web console served by the control plane'),
    scrapers: z
      .array(Cidr)
      .default([])
      .describe(
        'networks your Prometheus scrapes from: `gatehouse export nftables|k8s` let them (and nobody else) reach each gateway admin listener (metrics) the topology puts off loopback; empty: nobody, and an admin listener off loopback is an export error',
      ),
    logSinks: z
      .array(
        z
          .string()
          .regex(/^(?:\[[0-9a-fA-F:.]+\]|[0-9.]+):\d{1,5}$/, 'a log sink is an IP address and a port (10.0.9.20:24224, [fd00::20]:514)')
          .refine((v) => isIP(v.slice(0, v.lastIndexOf(':')).replace(/^\[|\]$/g, '')) !== 0 && Number(v.slice(v.lastIndexOf(':') + 1)) <= 65535, 'a log sink is an IP address and a port up to 65535'),
      )
      .default([])
      .describe(
        "log aggregators (IP:port) each host's log shipper sends to: `gatehouse export nftables` lets every host reach them; empty: logs stay on the host. In Kubernetes logs are the containers' stdout, collected on the node: no pod flow",
      ),
  })
  .strict();
export type MonitorConfig = z.infer<typeof MonitorConfig>;
