// Runs one `run:` service module of a topology in its own process (forked by
// `gatehouse up`). The module exports `start({ host, port }) => { url, close }`.
import { pathToFileURL } from 'node:url';
import { announceReady, closeOnSignals } from './ready.ts';

interface ServiceModule {
  start(o: { host: string; port: number; service: string }): Promise<{ url: string; close(): Promise<void> }>;
}

const [modulePath, service] = process.argv.slice(2);
const mod = (await import(pathToFileURL(modulePath).href)) as ServiceModule;
if (typeof mod.start !== 'function') throw new Error(`${modulePath} does not export start()`);
const running = await mod.start({ host: '127.0.0.1', port: 0, service });
closeOnSignals(() => running.close());
announceReady({ component: 'service', service, endpoints: { service: running.url } });
