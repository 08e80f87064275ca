import type { PerCoreWalEntry } from '../entry/entry.js';
import { resultError } from '../reader/reader.js';
import { scanSegment, type SegmentScan } from '../reader/scan.js';
import type { ByteProgress } from './progress.js';
import type { SegmentRef } from './segments.js';

export interface ScannedSegment {
  ref: SegmentRef;
  scan: SegmentScan;
}

export interface ScanHooks {
  /** Each valid entry of the valid prefix, in write order. */
  entry?: (ref: SegmentRef, entry: PerCoreWalEntry, position: number) => void;
  /** After each segment, before the next one is read. */
  segment?: (scanned: ScannedSegment) => void;
}

// Progress is reported every this many entries: often enough for a smooth bar, rare
// enough that a 10-million-entry segment does not pay for 10 million redraw checks.
const PROGRESS_EVERY = 1024;

/** Scans each segment once, in order, feeding the bar with bytes scanned. */
export function scanAll(segments: readonly SegmentRef[], progress: ByteProgress, hooks: ScanHooks = {}): ScannedSegment[] {
  const visit = hooks.entry;
  const out: ScannedSegment[] = [];
  let base = 0;
  for (const ref of segments) {
    let n = 0;
    const at = base;
    const scan = scanSegment(ref.coreId, ref.path, {
      onEntry: (entry, position) => {
        if (visit !== undefined) visit(ref, entry, position);
        if (++n % PROGRESS_EVERY === 0) progress.update(at + position);
      },
    });
    base += ref.size;
    progress.update(base);
    out.push({ ref, scan });
    hooks.segment?.({ ref, scan });
  }
  return out;
}

/** Bytes past the valid end that are not zero padding: what a repair would cut. */
export function tornBytes(scan: SegmentScan): number {
  return scan.tail === 'clean' ? 0 : scan.fileLen - scan.validEnd;
}

/** What is wrong with a segment that is not clean, in one sentence naming file and byte. */
export function badMessage(scan: SegmentScan): string | null {
  if (scan.bad === null) return null;
  const base = resultError(scan.bad, scan.path, scan.coreId).message;
  switch (scan.tail) {
    case 'torn': return `${base}; nothing valid follows (a torn tail: repairable)`;
    case 'debris': return `${base}; ${scan.recordsAfterBad} valid record(s) follow but none was appended after this byte was synced (crash debris: repairable)`;
    case 'damaged': {
      const ev = scan.evidence!;
      return `${base}; the record at byte ${ev.position} was appended after ${ev.syncedBoundary} bytes had been synced, so data promised durable is lost (damage: not repairable by cutting)`;
    }
    default: return base;
  }
}

/** The stable code of a segment's first bad record (TORN_WRITE, CHECKSUM_MISMATCH, CORRUPTED). */
export function badCode(scan: SegmentScan): string | null {
  return scan.bad === null ? null : resultError(scan.bad, scan.path, scan.coreId).code;
}
