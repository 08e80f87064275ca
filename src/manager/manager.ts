import { dirname } from 'node:path';
import type { PerCoreWalEntry, U64Like } from '../entry/entry.js';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import { PerCoreWalReader } from '../reader/reader.js';
import { scanSegment, type SegmentScan, type TailState } from '../reader/scan.js';
import type { IoCompletion } from '../storage-io/types.js';
import { toPosition, toU64 } from '../util/u64.js';
import { CoreWalWriter } from '../writer/writer.js';
import { WalMergeIterator, type MergeSource } from '../merge/merge.js';
import { PerCoreWalConfig } from './config.js';
import { EpochRef } from './epoch.js';

/** What `create` or `open` found in one segment and what it did about it. */
export interface SegmentOpenReport {
  coreId: number;
  path: string;
  /** True when `create` made the segment (it did not exist or was empty). */
  created: boolean;
  /** File length before anything was cut. */
  fileLen: number;
  /** End of the last valid record: where the writer resumed. */
  validEnd: number;
  /** Bytes cut after `validEnd` (0 for a clean tail; trailing zeros are kept). */
  bytesCut: number;
  /** How the segment ended: `torn` and `debris` tails were cut (see {@link TailState}). */
  tail: TailState;
  /** Valid entries kept. */
  entries: number;
  /** The first bad record, for a tail that was cut. */
  bad: { kind: string; position: number; reason: string } | null;
  /** Epoch of the last entry kept, or null for an empty segment. */
  lastEpoch: bigint | null;
  /** Sequence the writer resumed at. */
  nextSequence: bigint;
}

export interface PerCoreWalOpenOptions {
  /**
   * Lowest global epoch to resume at, e.g. the epoch of a checkpoint whose segments were
   * reset afterwards. The global epoch is the larger of this and the highest epoch found.
   */
  minEpoch?: U64Like;
  /** Per core, the lowest next sequence (a checkpoint's, when segments were reset). Length `numCores`. */
  minSequences?: readonly U64Like[];
  /** Told about every segment whose tail `open` cut, with a readable message. */
  logger?: (message: string, report: SegmentOpenReport) => void;
}

export interface MergeIterOptions {
  /** Only entries with `epoch <= upToEpoch`. */
  upToEpoch?: U64Like;
  /** Per core, the position to start at (e.g. a checkpoint's `walPositions`). Length `numCores`. */
  from?: readonly number[];
}

/**
 * All cores of one WAL directory: one {@link CoreWalWriter} per segment, the global
 * epoch shared with worker threads ({@link EpochRef}), and the merge of every segment
 * into one global order.
 *
 * `open` is the crash-recovery entry point for the log itself: it reads each segment
 * once, cuts torn tails and crash debris beyond the last synced point (SPEC invariant 6),
 * refuses damage to synced data with `CORRUPTED`, and resumes every writer at the
 * highest epoch found and at its segment's next sequence, with timestamps past every
 * surviving entry (invariant 5) — so new entries order after everything that survived.
 *
 * @example
 * ```ts
 * const config = new PerCoreWalConfig('/data/wal', 4);
 * const wal = PerCoreWalManager.create(config);
 * wal.writer(2).appendPut(Buffer.from('k'), Buffer.from('v'));
 * wal.advanceEpoch();
 * wal.syncAll();
 * wal.close();
 *
 * const again = PerCoreWalManager.open(config);   // after a crash, too
 * for (const entry of again.mergeIter()) replay(entry);
 * ```
 */
export class PerCoreWalManager {
  private readonly cfg: PerCoreWalConfig;
  private readonly writers: CoreWalWriter[];
  private readonly globalEpoch: EpochRef;
  private readonly report: readonly SegmentOpenReport[];
  private closed = false;

  private constructor(cfg: PerCoreWalConfig, writers: CoreWalWriter[], epoch: EpochRef, report: SegmentOpenReport[]) {
    this.cfg = cfg;
    this.writers = writers;
    this.globalEpoch = epoch;
    this.report = Object.freeze(report.map((r) => Object.freeze(r)));
  }

  /**
   * Creates the directory and every segment. An existing non-empty segment is validated
   * like {@link CoreWalWriter.create}: a clean one is resumed (epoch and sequences as in
   * `open`), one with an invalid tail is refused with `INVALID_TAIL` before anything is
   * written — open such a WAL with {@link PerCoreWalManager.open}.
   */
  static create(config: PerCoreWalConfig, options: PerCoreWalOpenOptions = {}): PerCoreWalManager {
    const cfg = requireConfig(config);
    const opts = checkOptions(cfg, options);
    const fs = cfg.fs;
    try {
      // Every directory made here must survive a crash: fsync the parent of each.
      const missing: string[] = [];
      for (let d = cfg.baseDir; !fs.existsSync(d) && dirname(d) !== d; d = dirname(d)) missing.push(d);
      if (missing.length > 0) {
        fs.mkdirSync(cfg.baseDir, { recursive: true });
        for (const d of missing) fs.fsyncDir(dirname(d));
      }
    } catch (e) {
      throw ioError('create directory', e, cfg.baseDir);
    }
    const scans: (SegmentScan | null)[] = [];
    for (let c = 0; c < cfg.numCores; c++) {
      const path = cfg.segmentPath(c);
      let existing = false;
      try {
        existing = fs.existsSync(path) && fs.statSync(path).size > 0;
      } catch (e) {
        throw ioError('stat', e, path, undefined, c);
      }
      if (!existing) { scans.push(null); continue; }
      const scan = scanSegment(c, path, { fs, maxRecordSize: cfg.maxRecordSize });
      if (scan.tail !== 'clean') {
        const b = scan.bad!;
        throw new PerCoreWalError('INVALID_TAIL',
          `segment ${path} of core ${c} has an invalid record at byte ${b.position} (${b.kind}); open the WAL with PerCoreWalManager.open or repair it before appending`,
          { path, position: b.position, coreId: c });
      }
      scans.push(scan);
    }
    return PerCoreWalManager.build(cfg, scans, opts);
  }

  /**
   * Opens an existing WAL (every segment must exist: `SEGMENT_NOT_FOUND` otherwise).
   * Each segment is read once; a `torn` or `debris` tail is cut durably and reported
   * (see {@link PerCoreWalManager.openReport} and the `logger` option); a `damaged`
   * one — a bad record followed by one appended after it had been synced — throws
   * `CORRUPTED` naming core, file and position, and nothing is cut anywhere.
   */
  static open(config: PerCoreWalConfig, options: PerCoreWalOpenOptions = {}): PerCoreWalManager {
    const cfg = requireConfig(config);
    const opts = checkOptions(cfg, options);
    const fs = cfg.fs;
    const scans: SegmentScan[] = [];
    for (let c = 0; c < cfg.numCores; c++) {
      const path = cfg.segmentPath(c);
      let exists: boolean;
      try {
        exists = fs.existsSync(path) && fs.statSync(path).isFile();
      } catch (e) {
        throw ioError('stat', e, path, undefined, c);
      }
      if (!exists) {
        throw new PerCoreWalError('SEGMENT_NOT_FOUND', `segment ${path} of core ${c} does not exist (WAL in ${cfg.baseDir}, ${cfg.numCores} cores)`,
          { path, coreId: c });
      }
      const scan = scanSegment(c, path, { fs, maxRecordSize: cfg.maxRecordSize });
      if (scan.tail === 'damaged') {
        const b = scan.bad!;
        const ev = scan.evidence!;
        throw new PerCoreWalError('CORRUPTED',
          `segment ${path} of core ${c} is damaged at byte ${b.position} (${describeBad(b)}): the record at byte ${ev.position} ` +
          `was appended after the first ${ev.syncedBoundary} bytes had been synced, so synced data is lost; ` +
          'recover it with PerCoreRecoveryManager in a mode that tolerates corruption',
          { path, position: b.position, coreId: c });
      }
      scans.push(scan);
    }
    return PerCoreWalManager.build(cfg, scans, opts);
  }

  /** Opens every writer from the scans (null: a new segment). Nothing was written before this. */
  private static build(cfg: PerCoreWalConfig, scans: readonly (SegmentScan | null)[], opts: CheckedOptions): PerCoreWalManager {
    // Every writer resumes at the highest epoch any segment reached …
    let epoch = opts.minEpoch;
    for (const s of scans) if (s?.last && s.last.epoch > epoch) epoch = s.last.epoch;
    // … and past the latest timestamp at that epoch, so that its new entries order after
    // every surviving entry of every core even if the wall clock stepped back.
    let floor = -1n;
    for (const s of scans) if (s?.last && s.last.epoch === epoch && s.last.timestampNs > floor) floor = s.last.timestampNs;
    const writers: CoreWalWriter[] = [];
    const report: SegmentOpenReport[] = [];
    try {
      for (let c = 0; c < cfg.numCores; c++) {
        const scan = scans[c] ?? null;
        const wopts = cfg.writerOptions({
          epoch, minSequence: opts.minSequences?.[c], minTimestampNs: floor >= 0n ? floor + 1n : undefined,
        });
        const w = scan === null ? CoreWalWriter.create(c, cfg.segmentPath(c), wopts) : CoreWalWriter.openAfterScan(scan, wopts);
        writers.push(w);
        report.push(reportOf(c, cfg.segmentPath(c), scan, w));
      }
    } catch (e) {
      for (const w of writers) { try { w.close(); } catch { /* the first failure is the one to report */ } }
      throw e;
    }
    for (const r of report) {
      if (r.bytesCut > 0 && opts.logger) {
        opts.logger(`corewal: cut ${r.bytesCut} bytes of ${r.tail} tail from ${r.path} (core ${r.coreId}) at byte ${r.validEnd}` +
          (r.bad ? `: ${r.bad.kind} at byte ${r.bad.position}, ${r.bad.reason}` : ''), r);
      }
    }
    return new PerCoreWalManager(cfg, writers, EpochRef.create(epoch), report);
  }

  /** Per core, what `create`/`open` found and cut. */
  openReport(): readonly SegmentOpenReport[] { return this.report; }

  config(): PerCoreWalConfig { return this.cfg; }
  numCores(): number { return this.cfg.numCores; }
  segmentPath(coreId: number): string { return this.cfg.segmentPath(coreId); }

  /** The global epoch (shared with every thread holding {@link PerCoreWalManager.epochRef}). */
  epoch(): bigint { return this.globalEpoch.load(); }

  /** The global epoch's shared handle: post `epochRef().shared` to a worker, rebuild with `EpochRef.fromShared`. */
  epochRef(): EpochRef { return this.globalEpoch; }

  /** The writer of `coreId`. Throws `INVALID_CORE_ID` for an id outside `[0, numCores)`. */
  writer(coreId: number): CoreWalWriter {
    if (typeof coreId === 'number') {
      const w = this.writers[coreId];
      if (w !== undefined) return w;
    }
    return this.writerChecked(coreId);
  }

  /** The writer of `coreId`, validating the argument's type and range first (`INVALID_CORE_ID`). */
  writerChecked(coreId: number): CoreWalWriter {
    this.cfg.checkCoreId(coreId);
    this.checkOpen();
    return this.writers[coreId]!;
  }

  /**
   * Advances the global epoch by one and moves every writer to it; returns the new epoch.
   * The epoch first catches up with any writer that went higher on its own.
   */
  advanceEpoch(): bigint {
    this.checkOpen();
    let max = 0n;
    for (const w of this.writers) { const e = w.epoch(); if (e > max) max = e; }
    this.globalEpoch.raiseTo(max);
    const next = this.globalEpoch.advance();
    for (const w of this.writers) w.setEpoch(next);
    return next;
  }

  /** Sets the global epoch and every writer's. Lowering either fails with `EPOCH_MISMATCH`, before anything changes. */
  setEpochAll(epoch: U64Like): void {
    this.checkOpen();
    const e = toU64(epoch, 'epoch');
    const cur = this.globalEpoch.load();
    if (e < cur) throw new PerCoreWalError('EPOCH_MISMATCH', `epoch ${e} is below the global epoch ${cur}`);
    for (const w of this.writers) {
      if (w.epoch() > e) {
        throw new PerCoreWalError('EPOCH_MISMATCH', `epoch ${e} is below the epoch ${w.epoch()} of core ${w.coreId()}`,
          { coreId: w.coreId(), path: w.path() });
      }
    }
    this.globalEpoch.raiseTo(e);
    for (const w of this.writers) w.setEpoch(e);
  }

  /** Syncs every writer. All are tried; the first failure is thrown afterwards. */
  syncAll(): void {
    this.checkOpen();
    this.forEachWriter((w) => w.sync());
  }

  /** Per core, where the next record starts (buffered bytes included). */
  positions(): number[] { return this.writers.map((w) => w.position()); }

  /** Per core, the bytes promised durable. */
  syncedPositions(): number[] { return this.writers.map((w) => w.syncedPosition()); }

  /**
   * Cuts every segment back to its position in `positions` (record boundaries, each at
   * or before the writer's position), durably. Every position is checked before any
   * segment is cut.
   */
  truncateAll(positions: readonly number[]): void {
    this.checkOpen();
    const ps = this.checkPerCore(positions, 'positions').map((p, c) => toPosition(p, `positions[${c}]`));
    this.forEachWriter((w) => w.flush());
    for (let c = 0; c < ps.length; c++) {
      const w = this.writers[c]!;
      const p = ps[c]!;
      if (p > w.position()) {
        throw new PerCoreWalError('INVALID_POSITION', `cannot truncate core ${c} to ${p}: past its position ${w.position()}`,
          { coreId: c, path: w.path(), position: p });
      }
      if (p !== 0 && p !== w.position()) this.requireBoundary(c, p);
    }
    for (let c = 0; c < ps.length; c++) this.writers[c]!.truncate(ps[c]!);
  }

  /** Empties every segment (after a checkpoint captured them). Sequences and epoch keep counting. */
  resetAll(): void {
    this.checkOpen();
    this.forEachWriter((w) => w.reset());
  }

  /** Appends an EpochBarrier at the current epoch to every segment. */
  writeEpochBarrierAll(): void {
    this.checkOpen();
    for (const w of this.writers) w.appendEpochBarrier();
  }

  /**
   * Feeds one batch of StorageIo completions to every writer (each takes its own) and
   * returns how many writers completed a datasync. Every writer sees the batch even if
   * one fails; the first failure is thrown afterwards.
   */
  checkAllCompletions(completions: readonly IoCompletion[]): number {
    let n = 0;
    this.forEachWriter((w) => { if (w.checkCompletions(completions)) n++; });
    return n;
  }

  /** True while some writer waits for a StorageIo datasync. */
  anySyncPending(): boolean {
    for (const w of this.writers) if (w.isSyncPending()) return true;
    return false;
  }

  /** Bytes in all segments (buffered ones included). */
  totalSize(): number {
    let n = 0;
    for (const w of this.writers) n += w.position();
    return n;
  }

  /**
   * Streams every segment in global order ({@link PerCoreWalEntry.compare}), holding one
   * entry per core (SPEC invariant 8). Buffered records are written first; each segment
   * is read only up to its writer's `completedPosition()`, so records still in flight on
   * the StorageIo path are not read. Break out of the loop or call `close()` to release
   * the files.
   *
   * @example
   * ```ts
   * for (const entry of wal.mergeIter({ upToEpoch: 3n })) apply(entry);
   * ```
   */
  mergeIter(options: MergeIterOptions = {}): WalMergeIterator {
    this.checkOpen();
    const from = options.from === undefined ? undefined : this.checkPerCore(options.from, 'from');
    this.forEachWriter((w) => {
      try {
        w.flush();
      } catch (e) {
        // A poisoned writer's segment is still merged up to what completed.
        if (!(e instanceof PerCoreWalError && (e.code === 'POISONED' || e.code === 'CLOSED'))) throw e;
      }
    });
    const sources: MergeSource[] = this.writers.map((w, c) => ({
      coreId: c, path: w.path(), from: from?.[c], end: w.completedPosition(),
    }));
    return WalMergeIterator.open(sources, {
      fs: this.cfg.fs, maxRecordSize: this.cfg.maxRecordSize, upToEpoch: options.upToEpoch,
    });
  }

  /** Every entry of every segment in global order (see {@link PerCoreWalManager.mergeIter}). */
  mergeSegments(): PerCoreWalEntry[] {
    return this.mergeIter().toArray();
  }

  /** Every entry with `epoch <= maxEpoch`, in global order. */
  mergeSegmentsUpToEpoch(maxEpoch: U64Like): PerCoreWalEntry[] {
    return this.mergeIter({ upToEpoch: toU64(maxEpoch, 'maxEpoch') }).toArray();
  }

  /** Closes every writer (buffered records are written, not synced). Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.forEachWriter((w) => w.close());
  }

  private checkOpen(): void {
    if (this.closed) throw new PerCoreWalError('CLOSED', `the WAL manager of ${this.cfg.baseDir} is closed`, { path: this.cfg.baseDir });
  }

  private forEachWriter(fn: (w: CoreWalWriter) => void): void {
    let first: unknown = null;
    for (const w of this.writers) {
      try { fn(w); } catch (e) { first ??= e; }
    }
    if (first !== null) throw first;
  }

  private checkPerCore<T>(values: readonly T[], name: string): readonly T[] {
    if (!Array.isArray(values) || values.length !== this.cfg.numCores) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `${name} must be an array of ${this.cfg.numCores} values, one per core`);
    }
    return values;
  }

  private requireBoundary(c: number, pos: number): void {
    const path = this.writers[c]!.path();
    const r = PerCoreWalReader.open(c, path, { fs: this.cfg.fs, maxRecordSize: this.cfg.maxRecordSize });
    try {
      while (r.position() < pos && r.readNext().kind === 'entry');
      if (r.position() !== pos) {
        throw new PerCoreWalError('INVALID_POSITION', `${pos} is not a record boundary of ${path} (core ${c})`, { coreId: c, path, position: pos });
      }
    } finally {
      r.close();
    }
  }
}

interface CheckedOptions {
  minEpoch: bigint;
  minSequences: readonly bigint[] | undefined;
  logger: ((message: string, report: SegmentOpenReport) => void) | undefined;
}

function requireConfig(config: unknown): PerCoreWalConfig {
  if (!(config instanceof PerCoreWalConfig)) throw new PerCoreWalError('INVALID_ARGUMENT', 'config must be a PerCoreWalConfig');
  return config;
}

function checkOptions(cfg: PerCoreWalConfig, o: PerCoreWalOpenOptions): CheckedOptions {
  if (o === null || typeof o !== 'object') throw new PerCoreWalError('INVALID_ARGUMENT', 'options must be an object');
  const minEpoch = o.minEpoch === undefined ? 0n : toU64(o.minEpoch, 'minEpoch');
  let minSequences: bigint[] | undefined;
  if (o.minSequences !== undefined) {
    if (!Array.isArray(o.minSequences) || o.minSequences.length !== cfg.numCores) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `minSequences must be an array of ${cfg.numCores} sequences, one per core`);
    }
    minSequences = o.minSequences.map((s, c) => toU64(s, `minSequences[${c}]`));
  }
  if (o.logger !== undefined && typeof o.logger !== 'function') throw new PerCoreWalError('INVALID_ARGUMENT', 'logger must be a function');
  return { minEpoch, minSequences, logger: o.logger };
}

function describeBad(b: NonNullable<SegmentScan['bad']>): string {
  switch (b.kind) {
    case 'checksumMismatch': return `checksum mismatch: stored 0x${b.expected.toString(16)}, computed 0x${b.actual.toString(16)}`;
    case 'tornWrite': return `torn write: ${b.reason}`;
    case 'corrupted': return `corrupted: ${b.reason}`;
  }
}

function reportOf(coreId: number, path: string, scan: SegmentScan | null, w: CoreWalWriter): SegmentOpenReport {
  if (scan === null) {
    return { coreId, path, created: true, fileLen: 0, validEnd: 0, bytesCut: 0, tail: 'clean', entries: 0, bad: null, lastEpoch: null, nextSequence: w.sequence() };
  }
  const b = scan.bad;
  return {
    coreId, path, created: false, fileLen: scan.fileLen, validEnd: scan.validEnd,
    bytesCut: scan.tail === 'clean' ? 0 : scan.fileLen - scan.validEnd,
    tail: scan.tail, entries: scan.entries,
    bad: b === null ? null : { kind: b.kind, position: b.position, reason: describeBad(b) },
    lastEpoch: scan.last === null ? null : scan.last.epoch,
    nextSequence: w.sequence(),
  };
}
