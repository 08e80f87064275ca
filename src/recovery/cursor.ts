import { PerCoreWalEntry } from '../entry/entry.js';
import { PerCoreWalError } from '../errors/errors.js';
import type { WalFs } from '../io/fs.js';
import { PerCoreWalReader, resultError, type WalReadResult } from '../reader/reader.js';
import { scanSegment } from '../reader/scan.js';

/**
 * How recovery treats a bad record, per segment, with RocksDB's meanings:
 * - `tolerateCorruptedTail` (default): a torn tail, and crash debris beyond the last
 *   synced point, are dropped; damage to data that was synced is an error.
 * - `absoluteConsistency`: any bad byte is an error, a torn tail included.
 * - `pointInTime`: each segment stops at its first bad record, and no epoch that some
 *   core lost is replayed, so the cores stay consistent with each other.
 * - `skipAnyCorrupted`: bad records are skipped; reading resumes at the next valid record.
 */
export type RecoveryMode = 'tolerateCorruptedTail' | 'absoluteConsistency' | 'pointInTime' | 'skipAnyCorrupted';

export const RECOVERY_MODES: readonly RecoveryMode[] = ['tolerateCorruptedTail', 'absoluteConsistency', 'pointInTime', 'skipAnyCorrupted'];

/**
 * How a segment's replay ended: `clean` (end of log), `torn` / `debris` (a crash's tail,
 * dropped), `cut` (stopped at a bad record: `pointInTime`), `skipped` (`skipAnyCorrupted`
 * skipped bad records; see `skippedBytes`), `limit` (stopped at a position or epoch limit).
 */
export type SegmentEnd = 'clean' | 'torn' | 'debris' | 'cut' | 'skipped' | 'limit';

export interface BadRecord {
  kind: 'tornWrite' | 'checksumMismatch' | 'corrupted';
  position: number;
  reason: string;
}

export interface CursorOptions {
  fs: WalFs;
  maxRecordSize: number | undefined;
  mode: RecoveryMode;
  /** Start position (a record boundary). */
  from: number;
  /** Stop before this position (a record boundary). */
  end?: number;
  /** Stop before the first entry of this epoch or later (epochs never decrease in a segment). */
  epochLimit?: bigint | null;
  blockSize?: number;
}

const NO_END = Number.MAX_SAFE_INTEGER;

/**
 * Reads one segment for recovery, one entry ahead, applying the recovery mode to every
 * bad record it meets. A missing segment reads as empty.
 */
export class SegmentCursor {
  readonly coreId: number;
  readonly path: string;
  readonly start: number;
  /** The entry to hand out next, or null when the segment is done. */
  head: PerCoreWalEntry | null = null;
  /** Just past the last entry handed out: where this segment's replay ended. */
  consumed: number;
  /** The last valid entry read (handed out or not). */
  last: PerCoreWalEntry | null = null;
  /** Valid entries read. */
  entries = 0;
  end: SegmentEnd = 'clean';
  /** True once the segment has nothing more to hand out. */
  done = false;
  /** The first bad record met, or null. */
  bad: BadRecord | null = null;
  /** `skipAnyCorrupted`: bytes and bad regions skipped. */
  skippedBytes = 0;
  skippedRegions = 0;
  readonly fileLen: number;
  private readonly reader: PerCoreWalReader | null;
  private readonly opts: CursorOptions;
  private readonly stopAt: number;
  private headEnd: number;
  private budget: number;
  private cutKnown = false;

  constructor(coreId: number, path: string, opts: CursorOptions) {
    this.coreId = coreId;
    this.path = path;
    this.opts = opts;
    this.start = opts.from;
    this.consumed = opts.from;
    this.headEnd = opts.from;
    this.stopAt = opts.end ?? NO_END;
    let exists: boolean;
    try {
      exists = opts.fs.existsSync(path);
    } catch {
      exists = true; // let the open report the real error
    }
    if (!exists) {
      if (opts.from > 0) {
        throw new PerCoreWalError('INVALID_POSITION', `segment ${path} does not exist, yet replay was to start at byte ${opts.from}`, { path, position: opts.from, coreId });
      }
      this.reader = null;
      this.fileLen = 0;
      this.budget = 0;
      return;
    }
    this.reader = PerCoreWalReader.openFrom(coreId, path, opts.from, { fs: opts.fs, maxRecordSize: opts.maxRecordSize, blockSize: opts.blockSize });
    this.fileLen = this.reader.fileLen();
    this.budget = 16 * this.fileLen + (64 << 20);
  }

  /** Bytes read so far (for progress). */
  position(): number { return this.reader === null ? 0 : this.reader.position(); }

  /** Moves past the head: the next entry becomes the head; false when the segment is done. */
  advance(): boolean {
    this.consumed = this.headEnd;
    const reader = this.reader;
    if (reader === null) { this.head = null; this.done = true; return false; }
    for (;;) {
      const at = reader.position();
      if (at >= this.stopAt) return this.finish('limit');
      const r = reader.readNext();
      if (r.kind === 'entry') {
        const e = r.entry;
        const prev = this.last;
        if (prev !== null && PerCoreWalEntry.compare(prev, e) >= 0) {
          const bad: WalReadResult = {
            kind: 'corrupted', position: at,
            reason: `entry does not order after the one before it (epoch ${prev.epoch} → ${e.epoch}, sequence ${prev.sequence} → ${e.sequence})`,
          };
          if (this.onBad(bad, at, true)) continue;
          return false;
        }
        const limit = this.opts.epochLimit;
        if (limit !== undefined && limit !== null && e.epoch >= limit) {
          reader.seek(at);
          return this.finish('limit');
        }
        this.entries++;
        this.last = e;
        this.head = e;
        this.headEnd = reader.position();
        return true;
      }
      if (r.kind === 'eof') return this.finish(this.end === 'skipped' ? 'skipped' : 'clean');
      if (this.onBad(r, at, false)) continue;
      return false;
    }
  }

  /** `pointInTime`: a first pass found this segment's first bad record; this pass stops before it. */
  presetCut(bad: BadRecord | null): void {
    this.bad = bad;
    this.cutKnown = true;
  }

  private finish(reason: SegmentEnd): false {
    const end = reason === 'limit' && this.cutKnown ? 'cut' : reason;
    if (this.end === 'clean' || end !== 'clean') this.end = end;
    this.head = null;
    this.done = true;
    return false;
  }

  /** Applies the mode to a bad record at `at`: true to keep reading (resynchronised), false when the segment ends. */
  private onBad(r: Exclude<WalReadResult, { kind: 'entry' } | { kind: 'eof' }>, at: number, outOfOrder: boolean): boolean {
    const reader = this.reader!;
    const bad: BadRecord = { kind: r.kind, position: at, reason: describe(r) };
    this.bad ??= bad;
    switch (this.opts.mode) {
      case 'absoluteConsistency':
        throw resultError(r, this.path, this.coreId);
      case 'pointInTime':
        reader.seek(at);
        this.finish('cut');
        return false;
      case 'tolerateCorruptedTail': {
        if (outOfOrder) throw resultError(r, this.path, this.coreId);
        if (r.kind === 'tornWrite') { this.finish('torn'); return false; }
        const scan = scanSegment(this.coreId, this.path, { fs: this.opts.fs, maxRecordSize: this.opts.maxRecordSize, from: at });
        if (scan.tail === 'damaged') {
          const ev = scan.evidence!;
          const base = resultError(r, this.path, this.coreId);
          throw new PerCoreWalError(base.code,
            `${base.message}; this is damage to synced data, not a crash's tail: the record at byte ${ev.position} was appended when ` +
            `${ev.syncedBoundary} bytes were already durable (recover with mode 'skipAnyCorrupted' or 'pointInTime' to accept the loss)`,
            { path: this.path, position: at, coreId: this.coreId });
        }
        this.finish(scan.tail === 'debris' ? 'debris' : 'torn');
        return false;
      }
      case 'skipAnyCorrupted': {
        let from = at + 1;
        for (;;) {
          const q = reader.resyncFrom(from, this.budget);
          this.budget -= reader.lastResyncCost();
          if (q < 0) {
            this.skippedBytes += this.fileLen - at;
            this.skippedRegions++;
            reader.seek(this.fileLen);
            this.end = 'skipped';
            this.finish('skipped');
            return false;
          }
          reader.seek(q);
          const next = reader.readNext();
          // resyncFrom found a valid record at q; it must also order after what came before
          // (a record-shaped value inside a damaged record is not the log resuming).
          if (next.kind === 'entry' && (this.last === null || PerCoreWalEntry.compare(this.last, next.entry) < 0)) {
            reader.seek(q);
            this.skippedBytes += q - at;
            this.skippedRegions++;
            this.end = 'skipped';
            return true;
          }
          from = q + 1;
        }
      }
    }
  }

  close(): void { this.reader?.close(); }
}

function describe(r: Exclude<WalReadResult, { kind: 'entry' } | { kind: 'eof' }>): string {
  switch (r.kind) {
    case 'checksumMismatch': return `checksum mismatch: stored 0x${r.expected.toString(16)}, computed 0x${r.actual.toString(16)}`;
    default: return r.reason;
  }
}
