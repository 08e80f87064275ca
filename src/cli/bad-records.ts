import { PerCoreWalReader, resultError } from '../reader/reader.js';
import type { SegmentRef } from './segments.js';

/**
 * - `damage`: a valid record after it was appended once this byte had been synced: data
 *   promised durable is gone.
 * - `debris`: valid records follow, but none appended after this byte was synced: a crash
 *   may have persisted pages out of order. Cutting it loses nothing promised.
 * - `torn`: nothing valid follows: the ordinary end of a crashed log.
 */
export type BadSeverity = 'damage' | 'debris' | 'torn';

export interface BadRecord {
  position: number;
  /** Where the next valid record starts, or the file length if none does. */
  resumesAt: number;
  code: string;
  message: string;
  severity: BadSeverity;
}

// A segment shredded by garbage could otherwise report one problem per byte.
export const MAX_BAD_PER_SEGMENT = 1000;

/**
 * Every bad record of a segment from `from` (the end of its valid prefix) on, skipping
 * each one by resynchronising on the next record that checks out, so that verify can name
 * every damaged place rather than only the first.
 */
export function listBadRecords(ref: SegmentRef, from: number): { bad: BadRecord[]; truncated: boolean } {
  const reader = PerCoreWalReader.openFrom(ref.coreId, ref.path, from);
  const bad: BadRecord[] = [];
  // gapMax[i]: the highest syncedBoundary among valid records between bad[i] and bad[i+1].
  const gapMax: number[] = [];
  let truncated = false;
  try {
    for (;;) {
      const r = reader.readNext();
      if (r.kind === 'entry') {
        if (gapMax.length > 0) gapMax[gapMax.length - 1] = Math.max(gapMax[gapMax.length - 1]!, r.entry.syncedBoundary);
        continue;
      }
      if (r.kind === 'eof') break;
      const position = reader.position();
      const next = reader.resyncFrom(position + 1);
      const err = resultError(r, ref.path, ref.coreId);
      bad.push({ position, resumesAt: next < 0 ? reader.fileLen() : next, code: err.code, message: err.message, severity: 'torn' });
      gapMax.push(-1);
      if (next < 0) break;
      if (bad.length >= MAX_BAD_PER_SEGMENT) { truncated = true; break; }
      reader.seek(next);
    }
  } finally {
    reader.close();
  }
  let laterMax = -1;
  let laterValid = false;
  for (let i = bad.length - 1; i >= 0; i--) {
    laterMax = Math.max(laterMax, gapMax[i]!);
    laterValid ||= gapMax[i]! >= 0;
    const b = bad[i]!;
    b.severity = laterMax > b.position ? 'damage' : laterValid ? 'debris' : 'torn';
  }
  return { bad, truncated };
}
