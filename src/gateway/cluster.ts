// `gatehouse gateway`: one process, or a primary with N workers sharing the
// listening socket (node:cluster). The primary owns the admin listener,
// aggregates the workers' metrics, validates a reload before any worker sees
// it, shares circuit-breaker state between the workers (an upstream that fails
// trips once for all of them) and replaces a worker that dies, with backoff.
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry } from 'prom-client';
import { announceReady, closeOnSignals, drainTimeoutMs } from '../cli/ready.ts';
import { loadTopology } from '../topology/load.ts';
import { createAdminServer } from './admin.ts';
import { startGateway, type RunningGateway, type CircuitChange, type GatewayOptions } from './server.ts';
import { createLogger } from '../shared/logger.ts';
import { createLineRelay, needsRelay } from '../shared/line-relay.ts';
import { openDevCa } from '../shared/dev-ca.ts';
import type { PepBundleSource } from '../control/index.ts';

export interface GatewayProcessOptions {
  config: string;
  zone: string;
  stateDir: string;
  workers: number;
  listen?: string;
  adminListen?: string;
  redirectListen?: string;
  /** Follow the control plane or exported bundles (see GatewayOptions.bundles). */
  bundles?: PepBundleSource;
  /** The workload certificate from the CA server (see GatewayOptions.bootstrap); one process only (a join token is single use). */
  bootstrap?: GatewayOptions['bootstrap'];
}

type WorkerMessage =
  | { type: 'gatehouse:worker-ready'; url: string; redirectUrl?: string }
  | { type: 'gatehouse:reloaded'; ok: boolean; error?: string; generation?: number }
  | { type: 'gatehouse:circuit'; change: CircuitChange };

/** The drain on SIGTERM: the topology's, within what the supervisor (`up --drain-timeout`) waits for. */
const drainFor = (gw: RunningGateway) => Math.max(0, Math.min(gw.state().config.limits.drainTimeoutMs, drainTimeoutMs() - 500));

export async function runGatewayProcess(o: GatewayProcessOptions): Promise<void> {
  if (o.workers <= 1 && !cluster.isWorker) {
    const gw = await startGateway({ ...o });
    process.on('SIGHUP', () => void gw.reload());
    closeOnSignals(() => gw.close(drainFor(gw)));
    announceReady({ component: 'gateway', zone: o.zone, endpoints: endpointsOf(gw) });
    return;
  }
  if (cluster.isWorker) return runWorker(o);
  return runPrimary(o);
}

function endpointsOf(gw: RunningGateway): Record<string, string> {
  const e: Record<string, string> = { gateway: gw.url };
  if (gw.adminUrl) e.admin = gw.adminUrl;
  if (gw.redirectUrl) e.redirect = gw.redirectUrl;
  return e;
}

async function runWorker(o: GatewayProcessOptions): Promise<void> {
  const gw = await startGateway({
    ...o,
    adminListen: false,
    onCircuit: (change) => process.send?.({ type: 'gatehouse:circuit', change } satisfies WorkerMessage),
  });
  // constructing one installs the worker's answer to the primary's metrics requests
  new AggregatorRegistry();
  AggregatorRegistry.setRegistries([gw.metrics.registry]);
  process.on('message', (m: { type?: string; change?: CircuitChange }) => {
    if (m?.type === 'gatehouse:circuit' && m.change) gw.applyCircuit(m.change);
    if (m?.type === 'gatehouse:reload')
      void gw.reload().then((r) =>
        process.send?.({ type: 'gatehouse:reloaded', ok: r.ok, error: r.ok ? undefined : r.error, generation: r.ok ? r.generation : undefined }),
      );
  });
  const stop = () => gw.close(drainFor(gw)).then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('disconnect', stop);
  process.send?.({ type: 'gatehouse:worker-ready', url: gw.url, redirectUrl: gw.redirectUrl } satisfies WorkerMessage);
}

async function runPrimary(o: GatewayProcessOptions): Promise<void> {
  const logger = createLogger({ name: `gateway.${o.zone}` });
  const { topology } = loadTopology(o.config);
  // create the dev CA once, before the workers race to
  await openDevCa(o.stateDir, topology.trustDomain);
  const gateway = topology.zones[o.zone]!.gateway!;
  const aggregator = new AggregatorRegistry();
  const workers: Worker[] = [];
  let stopping = false;
  let url = '';
  let redirectUrl: string | undefined;
  // consecutive upstream failures counted across the workers: the breaker opens once, for all of them
  const failures = new Map<string, number>();
  const shareCircuit = (c: CircuitChange) => {
    if (c.kind !== 'outcome') return;
    if (c.failure === undefined) return void failures.delete(c.service);
    const n = (failures.get(c.service) ?? 0) + 1;
    failures.set(c.service, n);
    if (n < c.threshold) return;
    failures.delete(c.service);
    const open: WorkerMessage = { type: 'gatehouse:circuit', change: { service: c.service, kind: 'state', open: true, reason: c.failure, until: Date.now() + c.openMs } };
    for (const w of workers) if (w?.isConnected()) w.send(open);
  };
  // stdout shared by the workers is a pipe (a container's log driver): each worker gets a pipe of its
  // own and this process copies whole lines (a shared regular file keeps every write whole by itself)
  const relay = needsRelay(1) ? createLineRelay() : undefined;
  cluster.setupPrimary({ stdio: [0, relay ? 'pipe' : 1, 2, 'ipc'] });
  let serving = false;
  let restarts = 0;
  let healthySince = Date.now();
  const ready = new Promise<void>((resolve, reject) => {
    let count = 0;
    const fork = (i: number) => {
      const w = cluster.fork({ GATEHOUSE_WORKER: String(i) });
      if (relay) relay.add(w.process.stdout!);
      workers[i] = w;
      w.on('message', (m: WorkerMessage) => {
        if (m.type === 'gatehouse:worker-ready') {
          url = m.url;
          redirectUrl = m.redirectUrl;
          if (++count === o.workers) {
            serving = true;
            resolve();
          }
        } else if (m.type === 'gatehouse:circuit') shareCircuit(m.change);
      });
      w.on('exit', (code, signal) => {
        if (stopping) return;
        if (!serving) return reject(new Error(`gateway worker exited during start (code ${code})`));
        // the other workers keep serving; this one comes back after a backoff (0.5 s doubling to 30 s, reset after a minute up)
        if (Date.now() - healthySince > 60_000) restarts = 0;
        const delay = Math.min(30_000, 500 * 2 ** restarts++) * (0.5 + Math.random() / 2);
        logger.error({ code, signal, worker: i, restartInMs: Math.round(delay) }, 'gateway worker died; replacing it');
        count--;
        setTimeout(() => {
          if (stopping) return;
          healthySince = Date.now();
          fork(i);
        }, delay).unref();
      });
    };
    for (let i = 0; i < o.workers; i++) fork(i);
  });
  // workers inherit argv and run the same command; they take the worker branch
  await ready;

  const reload = async () => {
    try {
      const next = loadTopology(o.config);
      if (!next.topology.zones[o.zone]?.gateway) throw new Error(`zone ${o.zone} has no gateway any more`);
    } catch (error) {
      return { ok: false as const, error: (error as Error).message };
    }
    const results = await Promise.all(
      workers.map(
        (w) =>
          new Promise<WorkerMessage & { type: 'gatehouse:reloaded' }>((resolve) => {
            const on = (m: WorkerMessage) => {
              if (m.type === 'gatehouse:reloaded') {
                w.off('message', on);
                resolve(m);
              }
            };
            w.on('message', on);
            w.send({ type: 'gatehouse:reload' });
          }),
      ),
    );
    const failed = results.find((r) => !r.ok);
    return failed ? { ok: false as const, error: failed.error ?? 'reload failed' } : { ok: true as const, generation: results[0].generation ?? 0 };
  };
  const admin = await createAdminServer({
    listen: o.adminListen ?? gateway.admin.listen,
    metrics: () => aggregator.clusterMetrics(),
    contentType: aggregator.contentType,
    ready: () => workers.every((w) => w.isConnected()),
    reload,
  });
  process.on('SIGHUP', () => void reload().then((r) => logger.info(r, 'reload')));

  const shutdown = async (code = 0) => {
    if (stopping) return;
    stopping = true;
    await admin.close();
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            w.once('exit', () => resolve());
            w.process.kill('SIGTERM');
          }),
      ),
    );
    // the workers' last lines (flushed as they stopped) are written before this process goes
    await relay?.drained(2_000);
    process.exit(code);
  };
  closeOnSignals(() => shutdown(0));
  const endpoints: Record<string, string> = { gateway: url, admin: admin.url };
  if (redirectUrl) endpoints.redirect = redirectUrl;
  announceReady({ component: 'gateway', zone: o.zone, endpoints });
}
