// Renewal lineage: who was renewed from whom. Every certificate the CA issues
// is recorded before it is handed out; a renewal records the serial it was
// renewed from (`parent`) and inherits its lineage id (the serial that began
// the chain, at bootstrap or direct issuance). Revoking a certificate revokes
// its descendants (revoke-certificate.ts), and the CA refuses to renew a
// certificate any ancestor of which is revoked — a key stolen and renewed once
// cannot outlive the revocation of the certificate it was stolen with.
//
//   pki/lineages/<lineage>/<serial>.json  the record: { serial, parent?, lineage, spiffeId, issuedAt, notAfter }
//   pki/issued/<serial>                   the lineage id of <serial> (an index: `ca revoke` names a serial only)
//
// One file per certificate, created once and whole (files.ts createOnce), like
// revoked/: a `ca revoke` in another process never races a read-modify-write,
// and a failed issuance (a full disk) leaves no record of a certificate nobody
// received. A lineage is deleted (prune) once every certificate in it has
// expired: nothing in it can renew.
import { mkdirSync, readFileSync, readdirSync, rmSync, rmdirSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import { normalizeSerial } from './x509.ts';
import { createOnce, stateWriteError } from './files.ts';

export interface LineageRecord {
  serial: string;
  /** The serial this certificate was renewed from; absent: the first of its lineage. */
  parent?: string;
  /** The serial that began the chain. */
  lineage: string;
  spiffeId: string;
  issuedAt: string;
  notAfter: string;
}

export interface LineageDirs {
  lineages: string;
  issued: string;
}

export function lineageDirs(pkiDir: string): LineageDirs {
  return { lineages: path.join(pkiDir, 'lineages'), issued: path.join(pkiDir, 'issued') };
}

/** A serial as a file name: normalised hex, or nothing (never a path). */
function safe(serial: string | undefined): string | undefined {
  return serial === undefined ? undefined : (normalizeSerial(serial) ?? undefined);
}

export function lineageOf(dirs: LineageDirs, serial: string): string | undefined {
  const s = safe(serial);
  if (!s) return undefined;
  try {
    return safe(readFileSync(path.join(dirs.issued, s), 'utf8').trim());
  } catch {
    return undefined;
  }
}

/** Records a new certificate; `parent` (when renewed) must have been issued by this CA, else it begins its own lineage. */
export function recordIssued(dirs: LineageDirs, entry: { serial: string; parent?: string; spiffeId: string; issuedAt: Date; notAfter: Date }): LineageRecord {
  const serial = safe(entry.serial);
  if (!serial) throw new Error('a serial number is hexadecimal');
  const parent = safe(entry.parent);
  // A parent issued before lineages were kept begins a lineage of its own, recorded now.
  let lineage = parent ? lineageOf(dirs, parent) : undefined;
  if (parent && !lineage) {
    lineage = parent;
    write(dirs, { serial: parent, lineage, spiffeId: entry.spiffeId, issuedAt: entry.issuedAt.toISOString(), notAfter: entry.notAfter.toISOString() }, true);
  }
  const record: LineageRecord = {
    serial,
    ...(parent ? { parent } : {}),
    lineage: lineage ?? serial,
    spiffeId: entry.spiffeId,
    issuedAt: entry.issuedAt.toISOString(),
    notAfter: entry.notAfter.toISOString(),
  };
  write(dirs, record, false);
  return record;
}

/**
 * Writes the record and the index entry of `record`, both or neither. An
 * existing entry is an error (a serial is recorded once), unless `mayExist`.
 * A failure removes what this call created (files, and the lineage folder if
 * it made it) and throws a StateWriteError naming the file.
 */
function write(dirs: LineageDirs, record: LineageRecord, mayExist: boolean): void {
  const dir = path.join(dirs.lineages, record.lineage);
  const made: string[] = [];
  const undo = () => {
    for (const p of made.reverse()) {
      try {
        if (p === dir) rmdirSync(p);
        else unlinkSync(p);
      } catch {
        // not ours to remove after all (another record arrived in the folder)
      }
    }
  };
  try {
    for (const d of [dir, dirs.issued]) {
      let created: string | undefined;
      try {
        created = mkdirSync(d, { recursive: true, mode: 0o700 });
      } catch (error) {
        throw stateWriteError(d, error, 'create');
      }
      if (d === dir && created !== undefined) made.push(dir); // the first folder made is `dir` or a parent of it
    }
    for (const [file, data] of [
      [path.join(dir, `${record.serial}.json`), JSON.stringify(record) + '\n'],
      [path.join(dirs.issued, record.serial), record.lineage + '\n'],
    ] as const) {
      if (createOnce(file, data, 0o600)) made.push(file);
      else if (!mayExist) throw stateWriteError(file, Object.assign(new Error('EEXIST: file already exists'), { code: 'EEXIST' }));
    }
  } catch (error) {
    undo();
    throw error;
  }
}

function members(dirs: LineageDirs, lineage: string): LineageRecord[] {
  const dir = path.join(dirs.lineages, lineage);
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return [];
  }
  const out: LineageRecord[] = [];
  for (const f of files) {
    if (!f.endsWith('.json')) continue;
    try {
      const r = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as LineageRecord;
      if (safe(r.serial) === f.slice(0, -5)) out.push(r);
    } catch {
      // a record being written, or damaged: skipped (its serial is still revocable by name)
    }
  }
  return out;
}

/** Every certificate renewed from `serial`, directly or not (breadth first). */
export function descendantsOf(dirs: LineageDirs, serial: string): string[] {
  const s = safe(serial);
  const lineage = s ? lineageOf(dirs, s) : undefined;
  if (!s || !lineage) return [];
  const children = new Map<string, string[]>();
  for (const r of members(dirs, lineage)) {
    if (!r.parent) continue;
    const list = children.get(r.parent) ?? [];
    list.push(r.serial);
    children.set(r.parent, list);
  }
  const out: string[] = [];
  const seen = new Set([s]);
  const queue = [s];
  while (queue.length) {
    for (const c of children.get(queue.shift()!) ?? []) {
      if (seen.has(c)) continue;
      seen.add(c);
      out.push(c);
      queue.push(c);
    }
  }
  return out;
}

/** `serial`'s ancestors, parent first (bounded by the lineage's size, so a damaged cycle ends). */
export function ancestorsOf(dirs: LineageDirs, serial: string): string[] {
  const s = safe(serial);
  const lineage = s ? lineageOf(dirs, s) : undefined;
  if (!s || !lineage) return [];
  const parentOf = new Map<string, string | undefined>();
  for (const r of members(dirs, lineage)) parentOf.set(r.serial, safe(r.parent));
  const out: string[] = [];
  const seen = new Set([s]);
  for (let p = parentOf.get(s); p !== undefined && !seen.has(p); p = parentOf.get(p)) {
    seen.add(p);
    out.push(p);
  }
  return out;
}

/** Deletes the lineages whose every certificate expired before `before`; returns how many. */
export function pruneLineages(dirs: LineageDirs, before: number): number {
  let lineages: string[];
  try {
    lineages = readdirSync(dirs.lineages);
  } catch {
    return 0;
  }
  let pruned = 0;
  for (const l of lineages) {
    if (safe(l) !== l) continue;
    const list = members(dirs, l);
    if (list.length === 0 || list.some((r) => !(Date.parse(r.notAfter) < before))) continue;
    for (const r of list) rmSync(path.join(dirs.issued, r.serial), { force: true });
    rmSync(path.join(dirs.lineages, l), { recursive: true, force: true });
    pruned++;
  }
  return pruned;
}
