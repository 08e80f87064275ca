import { PerCoreWalEntry } from '../entry/entry.js';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import { realFs, type WalFs } from '../io/fs.js';
import { scanSegment, type TailState } from '../reader/scan.js';
import { toPosition } from '../util/u64.js';
import { replayStarts } from '../checkpoint/resume.js';
import type { CheckpointMetadata } from '../checkpoint/format.js';
import { loadNewestValid, type ResolvedCheckpoint } from '../checkpoint/files.js';
import { KvState, keyBytes, type StateView } from '../checkpoint/state.js';
import { TAG_COMMIT, TAG_DELETE, TAG_PUT } from '../entry/codec.js';
import { RECOVERY_MODES, SegmentCursor, type BadRecord, type RecoveryMode, type SegmentEnd } from './cursor.js';
import { mergeCursors } from './merge.js';
import { DELETED, foldReplay, ReplayTable } from './replay-table.js';
import { PerCoreWalConfig } from '../manager/config.js';

/** What recovery needs to know about a WAL: where each core's segment is and how it was written. */
export interface WalLayout {
  readonly numCores: number;
  segmentPath(coreId: number): string;
  /** File layer the WAL lives on; default Node's fs. */
  readonly fs?: WalFs;
  /** Largest payload the writers accepted; default 256 MiB. */
  readonly maxRecordSize?: number | undefined;
}

export interface RecoveryProgress {
  /** `checkpoint`: loading the newest valid checkpoint; `scan`: finding each segment's end (`pointInTime`); `replay`: merging and applying the WAL. */
  phase: 'checkpoint' | 'scan' | 'replay';
  /** WAL bytes read so far, over every phase. */
  bytesDone: number;
  /** WAL bytes recovery will read in all, over every phase. */
  bytesTotal: number;
}

export interface PerCoreRecoveryOptions {
  checkpointDir: string;
  /** Default `tolerateCorruptedTail`. */
  mode?: RecoveryMode;
  /** Called as the WAL is read (every few thousand entries and at each phase's end), e.g. for a progress bar. */
  onProgress?: (progress: RecoveryProgress) => void;
  /** Told about every skipped checkpoint and every segment tail dropped, cut or skipped. */
  onWarning?: (message: string) => void;
  /** Keep the list of replayed Put/Delete changes in `stateChanges` (default true; memory grows with the WAL). */
  collectStateChanges?: boolean;
  /** File layer; default the WAL config's, else Node's fs. */
  fs?: WalFs;
}

/** One Put (value) or Delete (value null) replayed from the WAL. */
export interface StateChange {
  key: Uint8Array;
  value: Uint8Array | null;
  epoch: bigint;
  coreId: number;
}

/** How recovery read one segment. */
export interface SegmentRecovery {
  coreId: number;
  path: string;
  fileLen: number;
  /** Where replay started and where it ended (just past the last entry used). */
  start: number;
  end: number;
  /** Valid entries read and replayed. */
  entries: number;
  replayed: number;
  ended: SegmentEnd;
  /** The first bad record met, or null. */
  bad: BadRecord | null;
  /** `skipAnyCorrupted`: bytes skipped over bad records. */
  skippedBytes: number;
  /** Epoch of the last entry read, or null. */
  lastEpoch: bigint | null;
  /** The sequence this core's writer must resume at. */
  nextSequence: bigint;
}

/**
 * The state rebuilt from the newest valid checkpoint plus the WAL written after it.
 * Resume writing with `PerCoreWalManager.open(config, { minEpoch: finalEpoch, minSequences: nextSequences })`
 * so that new entries order after everything recovered, even in segments a checkpoint reset.
 */
export interface PerCoreRecoveredState {
  state: StateView;
  checkpointId: bigint | null;
  sourceOffsets: Map<string, bigint>;
  watermark: bigint | null;
  /** Put/Delete changes replayed from the WAL, in replay order (empty when `collectStateChanges` is false). */
  stateChanges: StateChange[];
  /** Per core, where replay ended. */
  walPositions: number[];
  /** WAL entries replayed (every operation type). */
  entriesReplayed: number;
  /** The epoch to resume at: the highest of the checkpoint's and of every entry replayed. */
  finalEpoch: bigint;
  /** The checkpoint recovery started from, or null. */
  checkpoint: CheckpointMetadata | null;
  /** Per core, the sequence its writer must resume at. */
  nextSequences: bigint[];
  segments: SegmentRecovery[];
  /** Skipped checkpoints, dropped tails, cut segments, skipped bytes. */
  warnings: string[];
}

/** One segment's statistics (see {@link PerCoreRecoveryManager.segmentStats}). */
export interface SegmentStats {
  coreId: number;
  path: string;
  exists: boolean;
  fileSize: number;
  entryCount: number;
  minEpoch: bigint;
  maxEpoch: bigint;
  /** End of the last valid record before the first bad one. */
  validEnd: number;
  tail: TailState;
}

interface Replay {
  cursors: SegmentCursor[];
  /** `pointInTime`: the first epoch not replayed, or null. */
  cutoff: bigint | null;
  bytesTotal: number;
  bytesBefore: number;
}

/**
 * Rebuilds state after a crash: the newest valid checkpoint (falling back past invalid
 * ones), then every WAL entry it does not hold, merged across cores in global order and
 * applied exactly once: a segment the checkpoint did not reset (a crash came first, or a
 * no-truncate checkpoint) is replayed from just past the checkpoint's barrier, one it
 * reset from its start. Each segment is read per the {@link RecoveryMode}. Recovery only
 * reads; `repairAllSegments` is the one method that writes.
 *
 * @example
 * ```ts
 * const config = new PerCoreWalConfig('/data/wal', 4);
 * const recovery = new PerCoreRecoveryManager(config, { checkpointDir: '/data/checkpoints', mode: 'pointInTime' });
 * const r = recovery.recover();
 * r.state.get('user:1');
 * recovery.repairAllSegments();   // cut what the mode dropped, before appending again
 * const wal = PerCoreWalManager.open(config, { minEpoch: r.finalEpoch, minSequences: r.nextSequences });
 * ```
 */
export class PerCoreRecoveryManager {
  private readonly layout: WalLayout;
  private readonly cpDir: string;
  private readonly mode: RecoveryMode;
  private readonly fs: WalFs;
  private readonly onProgress: ((p: RecoveryProgress) => void) | undefined;
  private readonly onWarning: ((m: string) => void) | undefined;
  private readonly collect: boolean;

  constructor(walConfig: WalLayout, options: PerCoreRecoveryOptions) {
    if (walConfig === null || typeof walConfig !== 'object' || typeof walConfig.segmentPath !== 'function' || !Number.isInteger(walConfig.numCores)) {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'walConfig must be a PerCoreWalConfig');
    }
    if (options === null || typeof options !== 'object') throw new PerCoreWalError('INVALID_ARGUMENT', 'options must be an object with checkpointDir');
    if (typeof options.checkpointDir !== 'string' || options.checkpointDir.length === 0) {
      throw new PerCoreWalError('INVALID_ARGUMENT', 'checkpointDir must be a non-empty string');
    }
    const mode = options.mode ?? 'tolerateCorruptedTail';
    if (!RECOVERY_MODES.includes(mode)) throw new PerCoreWalError('INVALID_ARGUMENT', `mode must be one of ${RECOVERY_MODES.join(', ')}, got ${String(mode)}`);
    for (const k of ['onProgress', 'onWarning'] as const) {
      if (options[k] !== undefined && typeof options[k] !== 'function') throw new PerCoreWalError('INVALID_ARGUMENT', `${k} must be a function`);
    }
    this.layout = walConfig;
    this.cpDir = options.checkpointDir;
    this.mode = mode;
    this.fs = options.fs ?? walConfig.fs ?? realFs;
    this.onProgress = options.onProgress;
    this.onWarning = options.onWarning;
    this.collect = options.collectStateChanges ?? true;
  }

  /** The mode segments are read in. */
  recoveryMode(): RecoveryMode { return this.mode; }

  /**
   * Newest valid checkpoint + the WAL after it: each segment from just past the
   * checkpoint's barrier if the segment still holds it (it was not reset), else from its
   * start.
   */
  recover(): PerCoreRecoveredState {
    return this.run(null);
  }

  /**
   * Newest valid checkpoint + the WAL from `positions[core]` on (record boundaries, e.g.
   * the `walPositions` of a checkpoint whose segments were not reset): the caller says
   * where the entries the checkpoint does not hold begin.
   */
  recoverFromPositions(positions: readonly number[]): PerCoreRecoveredState {
    return this.run(this.checkPositions(positions));
  }

  /** Every entry of every segment in global order, per the mode, without any checkpoint. */
  recoverWalOnly(): PerCoreWalEntry[] {
    const warnings: string[] = [];
    const replay = this.openReplay(new Array<number>(this.layout.numCores).fill(0), null, (m) => this.warn(warnings, m));
    const out: PerCoreWalEntry[] = [];
    try {
      mergeCursors(replay.cursors, (c) => { out.push(c.headEntry()); }, () => this.progress('replay', replay));
      this.progress('replay', replay);
      this.reportSegments(replay, (m) => this.warn(warnings, m));
    } finally {
      for (const c of replay.cursors) c.close();
    }
    return out;
  }

  /**
   * Cuts every segment where the mode stops reading it, durably, and returns the new
   * lengths (never below what the newest checkpoint holds, which recovery does not read): a torn tail or crash debris (`tolerateCorruptedTail`), the first bad record
   * and every epoch some core lost (`pointInTime`), garbage after the last valid record
   * (`skipAnyCorrupted`; damage in the middle stays, to be skipped again). Damage to
   * synced data fails with its code in `tolerateCorruptedTail`, any bad byte in
   * `absoluteConsistency`, before anything is cut. Preallocated zeros are cut too.
   */
  repairAllSegments(): number[] {
    const warnings: string[] = [];
    const meta = this.loadCheckpoint(warnings)?.metadata ?? null;
    // What a checkpoint holds is never cut: a segment it did not reset keeps its barrier.
    const starts = replayStarts(meta, this.layout.numCores, (c) => this.layout.segmentPath(c), this.fs);
    const replay = this.openReplay(starts, meta?.epoch ?? null, (m) => this.warn(warnings, m));
    try {
      mergeCursors(replay.cursors, () => {}, () => this.progress('replay', replay));
    } finally {
      for (const c of replay.cursors) c.close();
    }
    const ends = replay.cursors.map((c) => c.consumed);
    for (const c of replay.cursors) {
      if (c.fileLen > c.consumed) this.truncate(c.path, c.consumed, c.coreId);
    }
    return ends;
  }

  /** Per segment: size, valid entries, epoch range, and how its tail ends. Reads each segment once. */
  segmentStats(): SegmentStats[] {
    const out: SegmentStats[] = [];
    for (let c = 0; c < this.layout.numCores; c++) {
      const path = this.layout.segmentPath(c);
      if (!this.exists(path)) {
        out.push({ coreId: c, path, exists: false, fileSize: 0, entryCount: 0, minEpoch: 0n, maxEpoch: 0n, validEnd: 0, tail: 'clean' });
        continue;
      }
      const s = scanSegment(c, path, { fs: this.fs, maxRecordSize: this.layout.maxRecordSize });
      out.push({
        coreId: c, path, exists: true, fileSize: s.fileLen, entryCount: s.entries,
        minEpoch: s.first?.epoch ?? 0n, maxEpoch: s.last?.epoch ?? 0n, validEnd: s.validEnd, tail: s.tail,
      });
    }
    return out;
  }

  // ---- internals ------------------------------------------------------------------

  private run(given: number[] | null): PerCoreRecoveredState {
    const warnings: string[] = [];
    const warn = (m: string): void => this.warn(warnings, m);
    this.onProgress?.({ phase: 'checkpoint', bytesDone: 0, bytesTotal: 0 });
    const cp = this.loadCheckpoint(warnings);
    const meta = cp?.metadata ?? null;
    if (meta !== null && meta.walPositions.length !== 0 && meta.walPositions.length !== this.layout.numCores) {
      warn(`checkpoint ${meta.id} was taken with ${meta.walPositions.length} cores, the WAL has ${this.layout.numCores}`);
    }
    const state = cp?.state ?? new KvState();
    const map = state.map;
    const offsets = new Map(meta?.sourceOffsets ?? []);
    let watermark = meta?.watermark ?? null;
    const floor = meta?.epoch ?? null;
    const starts = given ?? replayStarts(meta, this.layout.numCores, (c) => this.layout.segmentPath(c), this.fs);
    const replay = this.openReplay(starts, floor, warn);
    const changes: StateChange[] = [];
    const collect = this.collect;
    // Without a change list, changes collect in a replay table (no allocation per entry)
    // and fold into the state at the end, reading only the values still live.
    const table = collect ? null : new ReplayTable();
    const replayed = new Array<number>(this.layout.numCores).fill(0);
    let count = 0;
    try {
      mergeCursors(replay.cursors, (c) => {
        count++;
        replayed[c.coreId]!++;
        switch (c.hTag) {
          case TAG_PUT: {
            if (table !== null) {
              c.loadHeadKey();
              const ref = c.headValueRef();
              table.set(c.kBuf, c.kStart, c.kEnd, ref >= 0 ? ref : table.copyRef(c.headValue()));
            } else {
              const k = c.headMapKey();
              const v = c.headValue();
              map.set(k, v);
              changes.push({ key: keyBytes(k), value: v, epoch: c.headEpoch(), coreId: c.coreId });
            }
            break;
          }
          case TAG_DELETE: {
            if (table !== null) {
              c.loadHeadKey();
              table.set(c.kBuf, c.kStart, c.kEnd, DELETED);
            } else {
              const k = c.headMapKey();
              map.delete(k);
              changes.push({ key: keyBytes(k), value: null, epoch: c.headEpoch(), coreId: c.coreId });
            }
            break;
          }
          case TAG_COMMIT: {
            const op = c.headEntry().operation;
            if (op.type !== 'commit') break;
            for (const [name, off] of op.offsets) offsets.set(name, off);
            if (op.watermark !== null) watermark = op.watermark;
            break;
          }
          default:
            // Checkpoint and EpochBarrier entries are markers: they change no state.
            break;
        }
      }, () => this.progress('replay', replay));
      if (table !== null) foldReplay(table, replay.cursors, (k, v) => map.set(k, v), (k) => map.delete(k));
      this.progress('replay', replay);
    } finally {
      for (const c of replay.cursors) c.close();
    }
    this.reportSegments(replay, warn);
    let finalEpoch = floor ?? 0n;
    const segments: SegmentRecovery[] = replay.cursors.map((c) => {
      const lastEpoch = c.lastEpoch();
      if (lastEpoch !== null && lastEpoch > finalEpoch) finalEpoch = lastEpoch;
      const fromCp = meta?.nextSequences[c.coreId] ?? 0n;
      const lastSeq = c.lastSequence();
      const fromWal = lastSeq === null ? 0n : lastSeq + 1n;
      return {
        coreId: c.coreId, path: c.path, fileLen: c.fileLen, start: c.start, end: c.consumed, entries: c.entries,
        replayed: replayed[c.coreId]!, ended: c.end, bad: c.bad, skippedBytes: c.skippedBytes, lastEpoch,
        nextSequence: fromWal > fromCp ? fromWal : fromCp,
      };
    });
    return {
      state, checkpointId: meta?.id ?? null, sourceOffsets: offsets, watermark, stateChanges: changes,
      walPositions: segments.map((s) => s.end), entriesReplayed: count, finalEpoch, checkpoint: meta,
      nextSequences: segments.map((s) => s.nextSequence), segments, warnings,
    };
  }

  private loadCheckpoint(warnings: string[]): ResolvedCheckpoint | null {
    return loadNewestValid(this.cpDir, this.fs, (m) => this.warn(warnings, m));
  }

  /**
   * Opens a cursor per segment. For `pointInTime`, first reads every segment to its first
   * bad record: a core cut at epoch E may have lost entries of E and later, so no core
   * replays E or later (`floor`, the checkpoint's epoch, when the cut core read nothing).
   */
  private openReplay(starts: number[], floor: bigint | null, warn: (m: string) => void): Replay {
    const n = this.layout.numCores;
    const base = { fs: this.fs, maxRecordSize: this.layout.maxRecordSize, mode: this.mode };
    let ends: (number | undefined)[] = new Array<number | undefined>(n).fill(undefined);
    let cutoff: bigint | null = null;
    let bytesBefore = 0;
    let scanBad: (BadRecord | null)[] = [];
    const sizes = starts.map((s, c) => Math.max(0, this.size(this.layout.segmentPath(c)) - s));
    const span = sizes.reduce((a, b) => a + b, 0);
    if (this.mode === 'pointInTime') {
      const scan: Replay = { cursors: [], cutoff: null, bytesTotal: 2 * span, bytesBefore: 0 };
      try {
        for (let c = 0; c < n; c++) scan.cursors.push(new SegmentCursor(c, this.layout.segmentPath(c), { ...base, from: starts[c]! }));
        for (const cur of scan.cursors) {
          let k = 0;
          while (cur.advance()) if ((++k & 4095) === 0) this.progress('scan', scan);
          if (cur.end === 'cut') {
            // Nothing valid read: a segment replayed from past the checkpoint's barrier held
            // only epochs from the checkpoint's on; one replayed from its start, any epoch.
            const lost = cur.lastEpoch() ?? (cur.start > 0 && floor !== null ? floor : 0n);
            if (cutoff === null || lost < cutoff) cutoff = lost;
          }
        }
        ends = scan.cursors.map((cur) => (cur.end === 'cut' ? cur.position() : undefined));
        scanBad = scan.cursors.map((cur) => (cur.end === 'cut' ? cur.bad : null));
        this.progress('scan', scan);
      } finally {
        for (const cur of scan.cursors) cur.close();
      }
      bytesBefore = span;
      if (cutoff !== null) warn(`pointInTime: a core lost records of epoch ${cutoff} or later; no core replays epoch ${cutoff} or later`);
    }
    const cursors: SegmentCursor[] = [];
    try {
      for (let c = 0; c < n; c++) {
        const cur = new SegmentCursor(c, this.layout.segmentPath(c), { ...base, from: starts[c]!, end: ends[c], epochLimit: cutoff });
        if (ends[c] !== undefined) cur.presetCut(scanBad[c] ?? null);
        cursors.push(cur);
      }
    } catch (e) {
      for (const cur of cursors) cur.close();
      throw e;
    }
    return { cursors, cutoff, bytesTotal: bytesBefore + span, bytesBefore };
  }

  private reportSegments(replay: Replay, warn: (m: string) => void): void {
    for (const c of replay.cursors) {
      const lost = c.fileLen - c.consumed;
      switch (c.end) {
        case 'torn':
        case 'debris':
          warn(`core ${c.coreId}: ${c.end === 'torn' ? 'torn tail' : 'crash debris beyond the last synced point'} at byte ${c.bad!.position} of ${c.path} dropped (${c.bad!.reason})`);
          break;
        case 'cut':
          warn(`core ${c.coreId}: ${c.path} read up to its first bad record at byte ${c.bad!.position} (${c.bad!.reason}); ${lost} bytes after it not replayed`);
          break;
        case 'skipped':
          warn(`core ${c.coreId}: skipped ${c.skippedBytes} bytes of bad records in ${c.path}, the first at byte ${c.bad!.position} (${c.bad!.reason})`);
          break;
        case 'limit':
          if (replay.cutoff !== null && lost > 0) warn(`core ${c.coreId}: ${lost} bytes of ${c.path} from byte ${c.consumed} not replayed (epoch ${replay.cutoff} or later)`);
          break;
        default:
          break;
      }
    }
  }

  private progress(phase: RecoveryProgress['phase'], replay: Replay): void {
    const cb = this.onProgress;
    if (cb === undefined) return;
    let done = phase === 'replay' ? replay.bytesBefore : 0;
    for (const c of replay.cursors) done += Math.max(0, (c.done ? Math.max(c.position(), c.fileLen) : c.position()) - c.start);
    cb({ phase, bytesDone: Math.min(done, replay.bytesTotal), bytesTotal: replay.bytesTotal });
  }

  private warn(list: string[], message: string): void {
    list.push(message);
    this.onWarning?.(message);
  }

  private checkPositions(positions: readonly number[]): number[] {
    if (!Array.isArray(positions) || positions.length !== this.layout.numCores) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `positions must be an array of ${this.layout.numCores} byte positions`);
    }
    return positions.map((p, c) => {
      const pos = toPosition(p, `positions[${c}]`);
      const path = this.layout.segmentPath(c);
      const len = this.size(path);
      if (pos > len) throw new PerCoreWalError('INVALID_POSITION', `position ${pos} is past the end of ${path} (${len} bytes)`, { path, position: pos, coreId: c });
      return pos;
    });
  }

  private exists(path: string): boolean {
    try {
      return this.fs.existsSync(path);
    } catch (e) {
      throw ioError('stat', e, path);
    }
  }

  private size(path: string): number {
    try {
      return this.fs.existsSync(path) ? this.fs.statSync(path).size : 0;
    } catch (e) {
      throw ioError('stat', e, path);
    }
  }

  private truncate(path: string, len: number, coreId: number): void {
    let fd: number;
    try {
      fd = this.fs.openSync(path, 'r+');
    } catch (e) {
      throw ioError('open', e, path, undefined, coreId);
    }
    try {
      this.fs.ftruncateSync(fd, len);
      this.fs.fdatasyncSync(fd);
    } catch (e) {
      throw ioError('truncate', e, path, len, coreId);
    } finally {
      try { this.fs.closeSync(fd); } catch { /* the truncate's own outcome is what matters */ }
    }
  }
}

/**
 * Recovers the WAL in `walDir` (default segment names) over the checkpoints in
 * `checkpointDir`: {@link PerCoreRecoveryManager.recover} in one call.
 *
 * @example
 * ```ts
 * const r = recoverPerCore('/data/wal', '/data/checkpoints', 4);
 * console.log(r.checkpointId, r.entriesReplayed, r.state.size);
 * const wal = PerCoreWalManager.open(new PerCoreWalConfig('/data/wal', 4), { minEpoch: r.finalEpoch, minSequences: r.nextSequences });
 * ```
 */
export function recoverPerCore(
  walDir: string, checkpointDir: string, numCores: number, options: Omit<PerCoreRecoveryOptions, 'checkpointDir'> = {},
): PerCoreRecoveredState {
  return new PerCoreRecoveryManager(new PerCoreWalConfig(walDir, numCores, options.fs ? { fs: options.fs } : {}), { ...options, checkpointDir }).recover();
}
