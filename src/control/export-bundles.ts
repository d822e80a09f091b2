// `gatehouse control export DIR`: the signed bundles as plain files
// (DIR/zone/<zone>/gateway.bundle, DIR/zone/<zone>/svc/<name>.bundle), for any
// web server or object store. Written through a temporary file and a rename,
// so a reader never sees half a bundle.
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createPublisher } from './lib/publisher.ts';
import { systemClock, type Clock } from '../shared/clock.ts';

export interface ExportBundlesOptions {
  config: string;
  stateDir: string;
  out: string;
  clock?: Clock;
  ttlSeconds?: number;
}

export async function exportBundles(options: ExportBundlesOptions): Promise<{ revision: number; files: string[] }> {
  const publisher = await createPublisher({ config: options.config, stateDir: options.stateDir, clock: options.clock ?? systemClock, ttlSeconds: options.ttlSeconds });
  const files: string[] = [];
  for (const e of publisher.entries()) {
    const file = path.resolve(options.out, e.file);
    mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, e.bytes, { mode: 0o644 });
    renameSync(tmp, file);
    files.push(file);
  }
  return { revision: publisher.revision(), files: files.sort() };
}
