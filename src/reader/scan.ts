import type { PerCoreWalEntry } from '../entry/entry.js';
import type { WalFs } from '../io/fs.js';
import { PerCoreWalReader, type WalReadResult } from './reader.js';

/**
 * How a segment ends, in the terms of SPEC invariant 6:
 * - `clean`: valid records, then nothing or zeros.
 * - `torn`: a bad last record and nothing valid after it: the ordinary result of a crash.
 * - `debris`: a bad record followed by valid ones that were all appended while the bad
 *   position was still unsynced, so a crash may legitimately have lost it (pages persisted
 *   out of order). Safe to cut like a torn tail.
 * - `damaged`: a bad record followed by a valid one appended after the bad position had
 *   been synced: data that was promised durable is gone. Never cut silently.
 */
export type TailState = 'clean' | 'torn' | 'debris' | 'damaged';

export interface SegmentScan {
  coreId: number;
  path: string;
  fileLen: number;
  /** End of the last valid record before the first bad one (or before the zeros/EOF). */
  validEnd: number;
  /** Valid entries before `validEnd`. */
  entries: number;
  /** The first entry and the last valid entry before `validEnd`, or null if there is none. */
  first: PerCoreWalEntry | null;
  last: PerCoreWalEntry | null;
  /** The first non-entry result, or null for a clean segment. */
  bad: Exclude<WalReadResult, { kind: 'entry' } | { kind: 'eof' }> | null;
  tail: TailState;
  /** For `damaged`: the later record proving the bad position had been synced. */
  evidence: { position: number; syncedBoundary: number } | null;
  /** Valid records found after the bad one while classifying. */
  recordsAfterBad: number;
}

export interface ScanOptions {
  fs?: WalFs;
  maxRecordSize?: number;
  /** Called for each valid entry before `validEnd`, in order (lets callers read the segment once). */
  onEntry?: (entry: PerCoreWalEntry, position: number) => void;
  /** Start position (a record boundary); default 0. */
  from?: number;
}

/** Reads a segment once and classifies its tail. Throws only for I/O errors and a missing file. */
export function scanSegment(coreId: number, path: string, options: ScanOptions = {}): SegmentScan {
  const reader = PerCoreWalReader.openFrom(coreId, path, options.from ?? 0, { fs: options.fs, maxRecordSize: options.maxRecordSize });
  try {
    let first: PerCoreWalEntry | null = null;
    let last: PerCoreWalEntry | null = null;
    let entries = 0;
    const onEntry = options.onEntry;
    for (;;) {
      const at = reader.position();
      const r = reader.readNext();
      if (r.kind === 'entry') {
        entries++;
        if (first === null) first = r.entry;
        last = r.entry;
        if (onEntry !== undefined) onEntry(r.entry, at);
        continue;
      }
      const base = { coreId, path, fileLen: reader.fileLen(), validEnd: reader.position(), entries, first, last };
      if (r.kind === 'eof') return { ...base, bad: null, tail: 'clean', evidence: null, recordsAfterBad: 0 };
      const badPos = reader.position();
      const { evidence, found } = classifyAfter(reader, badPos);
      const tail: TailState = evidence !== null ? 'damaged' : found > 0 ? 'debris' : 'torn';
      return { ...base, bad: r, tail, evidence, recordsAfterBad: found };
    }
  } finally {
    reader.close();
  }
}

/** Looks at every valid record after `badPos` for one appended after `badPos` was synced. */
function classifyAfter(reader: PerCoreWalReader, badPos: number): { evidence: SegmentScan['evidence']; found: number } {
  let found = 0;
  let at = badPos + 1;
  for (;;) {
    const next = reader.resyncFrom(at);
    if (next < 0) return { evidence: null, found };
    reader.seek(next);
    for (;;) {
      const p = reader.position();
      const r = reader.readNext();
      if (r.kind !== 'entry') break;
      found++;
      if (r.entry.syncedBoundary > badPos) return { evidence: { position: p, syncedBoundary: r.entry.syncedBoundary }, found };
    }
    at = reader.position() + 1;
  }
}
