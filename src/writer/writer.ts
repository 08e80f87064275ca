import { dirname } from 'node:path';
// Imported, not the global: in Node 20 `globalThis.performance` is an accessor, a getter call on every record.
import { performance } from 'node:perf_hooks';
import {
  encodePayload, FORMAT_VERSION, PAYLOAD_HEADER_SIZE, payloadSize, TAG_DELETE, TAG_PUT, writePayloadHeader,
} from '../entry/codec.js';
import { commitOperation, PerCoreWalEntry, type U64Like } from '../entry/entry.js';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import { closeOffThread, realFs, type WalFs } from '../io/fs.js';
import { scanSegment, type SegmentScan } from '../reader/scan.js';
import { PerCoreWalReader } from '../reader/reader.js';
import { DEFAULT_MAX_RECORD_SIZE, frameAt, RECORD_HEADER_SIZE } from '../record/framing.js';
import { sealFrames } from '../record/seal.js';
import type { IoCompletion, IoFd, StorageIo } from '../storage-io/types.js';
import { assert } from '../util/assert.js';
import { CLOCK_ANCHOR_PERF, CLOCK_ANCHOR_WALL_NS } from '../util/clock.js';
import { hi32, joinU64, lo32, requireBytes, toCoreId, toPosition, toU64, TWO_32 } from '../util/u64.js';
import { Compaction, type CompactionHost } from './compaction.js';

export { Compaction } from './compaction.js';

export interface CoreWalWriterOptions {
  /** Bytes buffered before a write(2). Default 64 KiB. */
  bufferSize?: number;
  /** Largest payload accepted. Default 256 MiB. */
  maxRecordSize?: number;
  /**
   * Zero-fill the segment up to this many bytes ahead of the write position (0 turns it
   * off). An fdatasync that does not grow the file skips the metadata write, which is most
   * of the cost of a sync-per-record workload. Syncs that carry much data gain little from
   * it and pay for the zeros (a datasync writes them back too), so it is skipped for
   * them: a direct `sync()` of a quarter of this or more, and on the StorageIo path while
   * datasyncs cover a sixteenth of it or more each (on average). The StorageIo path fills
   * in pieces of about two datasyncs' worth (64 KiB at least), so that no datasync carries
   * megabytes of zeros. Default 4 MiB.
   */
  preallocate?: number;
  /** Starting epoch for a new segment (an existing one resumes from its last entry if higher). */
  epoch?: U64Like;
  /** Lowest next sequence (e.g. from a checkpoint, when the segment was reset). */
  minSequence?: U64Like;
  /**
   * Lowest timestamp for later entries (ns). `PerCoreWalManager.open` sets it past every
   * surviving entry of every core, so that new entries sort after them even if the wall
   * clock stepped back across the restart.
   */
  minTimestampNs?: U64Like;
  /** Wall clock in nanoseconds, for tests; the default is a monotonic clock anchored to wall time. */
  clock?: () => bigint | number;
  /** File layer; defaults to Node's fs. */
  fs?: WalFs;
}

const DEFAULT_BUFFER = 64 * 1024;
const DEFAULT_PREALLOCATE = 4 * 1024 * 1024;
/** Flushes at least this large lend the buffer to a backend that takes it (`submitWriteOwned`) rather than have it copied. */
const LEND_MIN = 16 * 1024;
/** Spare append buffers kept for lending (beyond it they are left to the GC). */
const MAX_SPARE_BYTES = 4 * 1024 * 1024;
/** Smallest zero-fill on the StorageIo path (see `preallocateVia`). */
const PREALLOC_PIECE_MIN = 64 * 1024;
const PUT_FIXED = RECORD_HEADER_SIZE + PAYLOAD_HEADER_SIZE + 4;
const DELETE_FIXED = RECORD_HEADER_SIZE + PAYLOAD_HEADER_SIZE;
let zeroChunk: Buffer | null = null;


/**
 * The append side of one core's segment. Exactly one writer per segment, used by one
 * thread: appends never take a lock.
 *
 * Two write paths:
 * - direct: records collect in a buffer, `sync()` writes them and fdatasyncs;
 * - StorageIo: `append*ViaStorageIo` submit writes to a backend, `syncViaStorageIo`
 *   submits a datasync, and `checkCompletions` moves `syncedPosition()` once the
 *   datasync and every write before it have completed.
 *
 * Guarantees (SPEC invariants 1, 3–6): only bytes below `syncedPosition()` are promised
 * durable; after a failed write or sync the writer is poisoned (code `POISONED`);
 * timestamps never decrease, sequences strictly increase, the epoch never goes down;
 * nothing is appended after an invalid tail.
 *
 * @example
 * ```ts
 * const w = CoreWalWriter.create(0, '/data/wal/wal-0.log');
 * const at = w.appendPut(Buffer.from('user:1'), Buffer.from('{"name":"Ada"}'));
 * w.sync();                      // durable: w.syncedPosition() > at
 * w.close();
 * ```
 */
export class CoreWalWriter {
  private readonly fs: WalFs;
  private readonly segPath: string;
  private readonly core: number;
  private readonly maxRecord: number;
  private readonly preallocStep: number;
  private readonly clock: (() => bigint | number) | null;
  private fd: number;
  private buf: Buffer;
  private dv: DataView;
  /** Bytes of records in `buf`: framed, but their CRCs are written only by sealFrames, as the buffer goes out. */
  private bufLen = 0;
  /** File offset of buf[0]; position() = bufStart + bufLen. */
  private bufStart: number;
  private synced: number;
  private allocatedEnd: number;
  private eHi = 0; private eLo = 0;
  /** Next sequence to assign. */
  private sHi = 0; private sLo = 0;
  /** Last timestamp used. */
  private tHi = 0; private tLo = 0;
  private sinceSync = 0;
  private poison: PerCoreWalError | null = null;
  private closed = false;
  /** The compaction begun with `beginCompaction` and not yet over: the segment must stay where it reads. */
  private compaction: Compaction | null = null;
  // Monotonic clock anchor: wall time at construction plus performance.now() since.
  private readonly baseHi: number;
  private readonly baseLo: number;
  private readonly basePerf: number;
  // StorageIo path: a FIFO of submitted writes, and one of datasyncs (one at a time through
  // `syncViaStorageIo`; several through `syncViaStorageIoPipelined`).
  private wTok: number[] = [];
  private wEnd: number[] = [];
  private wLen: number[] = [];
  private wDone: boolean[] = [];
  private wHead = 0;
  /** Everything below this offset has been written and completed. */
  private written: number;
  /** Datasyncs in flight, in submission order: token, boundary, and whether it completed (well). */
  private sTok: number[] = [];
  private sBound: number[] = [];
  private sOk: boolean[] = [];
  /** Boundary of the last datasync submitted through StorageIo, and the bytes recent ones covered (a running mean). */
  private lastSyncAt = 0;
  private syncSpan = 0;
  /**
   * Boundary of the newest datasync that completed, every datasync before it having
   * completed well too (in submission order: a later datasync's success proves nothing
   * while an earlier one may yet fail, as the kernel reports a writeback error to one
   * fdatasync of the file only). `syncedPosition` is
   * min(syncCover, written): a datasync's boundary counts once every write below it has
   * completed, even when those completions are polled after the datasync's.
   */
  private syncCover: number;
  /**
   * The backend and fd of the last `*ViaStorageIo` call. Once the StorageIo path is in
   * use, records appended with the direct methods are buffered as usual but go out
   * through it (never as a blocking write on the caller's thread).
   */
  private sio: StorageIo | null = null;
  private sioFd = 0 as IoFd;
  /** The last view of `buf` handed to a backend (backends copy or write it before returning). */
  private recView: Buffer | null = null;
  /**
   * Append buffers lent to the backend (`submitWriteOwned`) by the token of their write,
   * and spare ones to append into meanwhile: a large flush swaps buffers instead of having
   * the backend copy it.
   */
  private lentTok: number[] = [];
  private lentBuf: Buffer[] = [];
  private spareBufs: Buffer[] = [];
  /** Preallocation writes (zeros beyond the records) in flight on the StorageIo path. */
  private zTok: number[] = [];
  private zLen: number[] = [];
  private zAt: number[] = [];

  private constructor(coreId: number, path: string, fd: number, position: number, fileLen: number, options: CoreWalWriterOptions, fs: WalFs) {
    this.core = coreId;
    this.segPath = path;
    this.fs = fs;
    this.fd = fd;
    this.maxRecord = options.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE;
    if (!Number.isSafeInteger(this.maxRecord) || this.maxRecord < PAYLOAD_HEADER_SIZE || this.maxRecord > 0xffffffff) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `maxRecordSize must be an integer in [${PAYLOAD_HEADER_SIZE}, 2^32), got ${this.maxRecord}`);
    }
    const size = options.bufferSize ?? DEFAULT_BUFFER;
    if (!Number.isSafeInteger(size) || size < 4096) throw new PerCoreWalError('INVALID_ARGUMENT', `bufferSize must be an integer >= 4096, got ${size}`);
    this.preallocStep = options.preallocate ?? DEFAULT_PREALLOCATE;
    if (!Number.isSafeInteger(this.preallocStep) || this.preallocStep < 0) {
      throw new PerCoreWalError('INVALID_ARGUMENT', `preallocate must be a non-negative integer, got ${this.preallocStep}`);
    }
    this.clock = options.clock ?? null;
    this.buf = Buffer.alloc(size);
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.byteLength);
    this.bufStart = position;
    this.synced = position;
    this.written = position;
    this.syncCover = position;
    this.lastSyncAt = position;
    this.allocatedEnd = fileLen;
    this.basePerf = CLOCK_ANCHOR_PERF;
    this.baseHi = hi32(CLOCK_ANCHOR_WALL_NS);
    this.baseLo = lo32(CLOCK_ANCHOR_WALL_NS);
    if (options.epoch !== undefined) this.setEpoch(options.epoch);
  }

  /**
   * Creates the segment, or resumes an existing one after validating it: a segment whose
   * tail is torn or corrupt is refused with `INVALID_TAIL` (open it through
   * `PerCoreWalManager.open` or repair it first), so nothing is appended after bad bytes.
   */
  static create(coreId: number, path: string, options: CoreWalWriterOptions = {}): CoreWalWriter {
    const c = toCoreId(coreId);
    requirePath(path);
    const fs = options.fs ?? realFs;
    let exists = false;
    try {
      exists = fs.existsSync(path) && fs.statSync(path).size > 0;
    } catch (e) {
      throw ioError('stat', e, path, undefined, c);
    }
    if (exists) {
      const scan = scanSegment(c, path, { fs, maxRecordSize: options.maxRecordSize });
      if (scan.tail !== 'clean') {
        const b = scan.bad!;
        throw new PerCoreWalError('INVALID_TAIL',
          `segment ${path} has an invalid record at byte ${b.position} (${b.kind}); recover it with PerCoreWalManager.open or repair before appending`,
          { path, position: b.position, coreId: c });
      }
      return CoreWalWriter.resume(c, path, scan.validEnd, scan.fileLen, scan.last, true, options, fs);
    }
    let fd: number;
    try {
      fd = fs.openSync(path, 'w+');
      fs.fsyncDir(dirname(path));
    } catch (e) {
      throw ioError('create', e, path, undefined, c);
    }
    const w = new CoreWalWriter(c, path, fd, 0, 0, options, fs);
    if (options.minSequence !== undefined) w.raiseSequence(toU64(options.minSequence, 'minSequence'));
    if (options.minTimestampNs !== undefined) w.raiseTimestamp(toU64(options.minTimestampNs, 'minTimestampNs'));
    return w;
  }

  /**
   * Opens an existing segment for appending at `position`, which must be a record boundary
   * at or before the end of its valid records. Bytes after it are cut (durably) first, so a
   * later reader can never mistake them for records. Sequence, timestamp and epoch continue
   * from the last entry before `position`.
   */
  static openAt(coreId: number, path: string, position: number, options: CoreWalWriterOptions = {}): CoreWalWriter {
    const c = toCoreId(coreId);
    requirePath(path);
    const pos = toPosition(position, 'position');
    const fs = options.fs ?? realFs;
    const reader = PerCoreWalReader.open(c, path, { fs, maxRecordSize: options.maxRecordSize });
    let last: PerCoreWalEntry | null = null;
    let fileLen: number;
    let restIsZeros: boolean;
    try {
      fileLen = reader.fileLen();
      while (reader.position() < pos) {
        const r = reader.readNext();
        if (r.kind !== 'entry') {
          throw new PerCoreWalError('INVALID_POSITION',
            `position ${pos} is beyond the valid records of ${path}, which end at byte ${reader.position()} (${r.kind})`,
            { path, position: pos, coreId: c });
        }
        last = r.entry;
      }
      if (reader.position() !== pos) {
        throw new PerCoreWalError('INVALID_POSITION', `position ${pos} is not a record boundary in ${path}`, { path, position: pos, coreId: c });
      }
      // The reader says `eof` only when nothing but zeros follows: preallocated space to keep.
      restIsZeros = reader.readNext().kind === 'eof';
    } finally {
      reader.close();
    }
    return CoreWalWriter.resume(c, path, pos, fileLen, last, restIsZeros, options, fs);
  }

  /**
   * @internal Resumes a segment at the `validEnd` of a scan the caller has just made with
   * {@link scanSegment}, so that opening a WAL reads each segment once. Like `openAt`,
   * bytes after `validEnd` that are not zeros are cut durably first.
   */
  static openAfterScan(scan: SegmentScan, options: CoreWalWriterOptions = {}): CoreWalWriter {
    const c = toCoreId(scan.coreId);
    requirePath(scan.path);
    const pos = toPosition(scan.validEnd, 'validEnd');
    assert(pos <= scan.fileLen, 'a scan ends within its file');
    // A clean scan ended in `eof`, so only zeros follow `validEnd`.
    return CoreWalWriter.resume(c, scan.path, pos, scan.fileLen, scan.last, scan.tail === 'clean', options, options.fs ?? realFs);
  }

  private static resume(
    c: number, path: string, pos: number, fileLen: number, last: PerCoreWalEntry | null, restIsZeros: boolean,
    options: CoreWalWriterOptions, fs: WalFs,
  ): CoreWalWriter {
    let fd: number;
    try {
      fd = fs.openSync(path, 'r+');
    } catch (e) {
      throw ioError('open', e, path, undefined, c);
    }
    let len = fileLen;
    try {
      // Keep preallocated zeros (the caller's reader has checked them); cut anything else so
      // it can never read as records.
      if (fileLen > pos && !restIsZeros) {
        fs.ftruncateSync(fd, pos);
        len = pos;
      }
      // What is in the file now becomes durable before anything is appended after it.
      fs.fdatasyncSync(fd);
    } catch (e) {
      try { fs.closeSync(fd); } catch { /* the truncate/fdatasync error is the one to report */ }
      throw ioError('truncate/fdatasync', e, path, pos, c);
    }
    const w = new CoreWalWriter(c, path, fd, pos, len, options, fs);
    if (last !== null) {
      if (last.eHi > w.eHi || (last.eHi === w.eHi && last.eLo > w.eLo)) { w.eHi = last.eHi; w.eLo = last.eLo; }
      w.tHi = last.tHi; w.tLo = last.tLo;
      w.sLo = last.sLo + 1; w.sHi = last.sHi;
      if (w.sLo === TWO_32) { w.sLo = 0; w.sHi++; }
    }
    if (options.minSequence !== undefined) w.raiseSequence(toU64(options.minSequence, 'minSequence'));
    if (options.minTimestampNs !== undefined) w.raiseTimestamp(toU64(options.minTimestampNs, 'minTimestampNs'));
    return w;
  }

  coreId(): number { return this.core; }
  path(): string { return this.segPath; }
  /** Where the next record starts (buffered and submitted bytes included). */
  position(): number { return this.bufStart + this.bufLen; }
  /** Bytes promised durable. */
  syncedPosition(): number { return this.synced; }
  epoch(): bigint { return joinU64(this.eHi, this.eLo); }
  /** The sequence the next entry will get. */
  sequence(): bigint { return joinU64(this.sHi, this.sLo); }
  /** Timestamp of the last entry appended or resumed from, in ns. */
  lastTimestampNs(): bigint { return joinU64(this.tHi, this.tLo); }
  entriesSinceSync(): number { return this.sinceSync; }
  /**
   * End of the bytes known to be in the file: buffered records are excluded, and on the
   * StorageIo path only writes up to the first one not yet completed count. Readers of a
   * live segment (the merge) stop here.
   */
  completedPosition(): number {
    // After a failure `written` stops at the failed write while the FIFO still drains.
    return this.wHead < this.wTok.length || this.poison !== null ? this.written : this.bufStart;
  }
  /** The error that poisoned this writer, or null. */
  poisonedBy(): PerCoreWalError | null { return this.poison; }
  isPoisoned(): boolean { return this.poison !== null; }

  /** Raises the epoch for later entries. Lowering it fails with `EPOCH_MISMATCH`. */
  setEpoch(epoch: U64Like): void {
    const e = toU64(epoch, 'epoch');
    const h = hi32(e), l = lo32(e);
    if (h < this.eHi || (h === this.eHi && l < this.eLo)) {
      throw new PerCoreWalError('EPOCH_MISMATCH', `epoch ${e} is below the writer's epoch ${this.epoch()} (core ${this.core})`, { coreId: this.core, path: this.segPath });
    }
    this.eHi = h; this.eLo = l;
  }

  /**
   * Raises the next sequence to at least `min`; never lowers it. For a segment a
   * checkpoint emptied: its writer resumes past the checkpoint's sequences.
   */
  raiseSequenceTo(min: U64Like): void {
    this.raiseSequence(toU64(min, 'min'));
  }

  private raiseSequence(min: bigint): void {
    if (min > this.sequence()) { this.sHi = hi32(min); this.sLo = lo32(min); }
  }

  private raiseTimestamp(min: bigint): void {
    if (min > this.lastTimestampNs()) { this.tHi = hi32(min); this.tLo = lo32(min); }
  }

  // ---- hot path ---------------------------------------------------------------

  private checkWritable(): void {
    if (this.poison !== null) {
      throw new PerCoreWalError('POISONED', `writer of core ${this.core} is poisoned by an earlier failure (${this.poison.message}); reopen it through recovery`,
        { coreId: this.core, path: this.segPath, cause: this.poison });
    }
    if (this.closed) throw new PerCoreWalError('CLOSED', `writer of core ${this.core} is closed`, { coreId: this.core, path: this.segPath });
  }

  /** Advances the timestamp: max(last, now), so it never decreases even if the clock steps back. */
  private tick(): void {
    let h: number, l: number;
    if (this.clock === null) {
      const d = Math.floor((performance.now() - this.basePerf) * 1e6);
      const dHi = Math.floor(d / TWO_32);
      l = this.baseLo + (d - dHi * TWO_32);
      h = this.baseHi + dHi;
      if (l >= TWO_32) { l -= TWO_32; h++; }
    } else {
      const t = toU64(this.clock(), 'clock()');
      h = hi32(t); l = lo32(t);
    }
    if (h > this.tHi || (h === this.tHi && l > this.tLo)) { this.tHi = h; this.tLo = l; }
  }

  private nextSequence(): void {
    this.sinceSync++;
    if (++this.sLo === TWO_32) { this.sLo = 0; this.sHi++; }
  }

  /** Room for `n` bytes in the buffer, flushing first if needed; false if `n` can never fit. */
  private reserve(n: number): boolean {
    if (n <= this.buf.length - this.bufLen) return true;
    if (this.sio !== null) this.flushBufferVia(this.sio, this.sioFd);
    else this.flushBuffer();
    return n <= this.buf.length;
  }

  /**
   * The checks every Put append makes before anything is written (the writer is
   * writable, key and value are bytes, the record fits `maxRecord`); returns the
   * payload's length. No allocation: `appendPut` is the hottest path.
   */
  private putPayloadLength(key: Uint8Array, value: Uint8Array): number {
    this.checkWritable();
    if (!(key instanceof Uint8Array)) requireBytes(key, 'key');
    if (!(value instanceof Uint8Array)) requireBytes(value, 'value');
    const plen = PAYLOAD_HEADER_SIZE + 4 + key.length + value.length;
    if (plen > this.maxRecord) throw this.tooLarge(plen);
    return plen;
  }

  /** As {@link CoreWalWriter.putPayloadLength}, for a Delete of `key`. */
  private deletePayloadLength(key: Uint8Array): number {
    this.checkWritable();
    if (!(key instanceof Uint8Array)) requireBytes(key, 'key');
    const plen = PAYLOAD_HEADER_SIZE + key.length;
    if (plen > this.maxRecord) throw this.tooLarge(plen);
    return plen;
  }

  /** Appends a Put. Returns the record's start position. */
  appendPut(key: Uint8Array, value: Uint8Array): number {
    const plen = this.putPayloadLength(key, value);
    const klen = key.length;
    const rlen = RECORD_HEADER_SIZE + plen;
    if (!this.reserve(rlen)) return this.appendLarge(PerCoreWalEntry.put(this.core, 0, 0, key, value, 0));
    this.tick();
    const off = this.bufLen;
    const dv = this.dv;
    const buf = this.buf;
    // The payload header written inline (same layout as writePayloadHeader): this is the
    // hottest line of the library, and V8 does not reliably inline the helper here.
    const p = off + RECORD_HEADER_SIZE;
    dv.setUint16(p, FORMAT_VERSION | (TAG_PUT << 8), true);
    dv.setUint16(p + 2, this.core, true);
    dv.setUint32(p + 4, this.eLo, true);
    dv.setUint32(p + 8, this.eHi, true);
    dv.setUint32(p + 12, this.sLo, true);
    dv.setUint32(p + 16, this.sHi, true);
    dv.setUint32(p + 20, this.tLo, true);
    dv.setUint32(p + 24, this.tHi, true);
    const synced = this.synced;
    const bHi = Math.floor(synced / TWO_32);
    dv.setUint32(p + 28, synced - bHi * TWO_32, true);
    dv.setUint32(p + 32, bHi, true);
    dv.setUint32(p + PAYLOAD_HEADER_SIZE, klen, true);
    buf.set(key, off + PUT_FIXED);
    buf.set(value, off + PUT_FIXED + klen);
    // The CRC is left for sealFrames, one call for the whole buffer when it is written.
    dv.setUint32(off, plen, true);
    this.bufLen = off + rlen;
    this.nextSequence();
    const start = this.bufStart + off;
    return start;
  }

  /** Appends a Delete. Returns the record's start position. */
  appendDelete(key: Uint8Array): number {
    const plen = this.deletePayloadLength(key);
    const rlen = RECORD_HEADER_SIZE + plen;
    if (!this.reserve(rlen)) return this.appendLarge(PerCoreWalEntry.delete(this.core, 0, 0, key, 0));
    this.tick();
    const off = this.bufLen;
    const start = this.bufStart + off;
    writePayloadHeader(this.dv, off + RECORD_HEADER_SIZE, TAG_DELETE, this.core, this.eHi, this.eLo, this.sHi, this.sLo, this.tHi, this.tLo, this.synced);
    this.buf.set(key, off + DELETE_FIXED);
    this.dv.setUint32(off, plen, true);
    this.bufLen = off + rlen;
    this.nextSequence();
    return start;
  }

  /**
   * Appends `entry`'s operation. The writer stamps it with its own core, epoch, next
   * sequence and timestamp (the invariants of SPEC 4 are the writer's to keep), except
   * that an entry with a higher epoch raises the writer's epoch first.
   */
  append(entry: PerCoreWalEntry): number {
    this.checkWritable();
    const stamped = this.stamp(entry);
    const plen = payloadSize(stamped);
    if (plen > this.maxRecord) throw this.tooLarge(plen);
    const rlen = RECORD_HEADER_SIZE + plen;
    if (!this.reserve(rlen)) return this.appendLarge(stamped);
    const off = this.bufLen;
    const start = this.bufStart + off;
    encodePayload(this.restamp(stamped), this.buf, this.dv, off + RECORD_HEADER_SIZE, this.synced);
    this.dv.setUint32(off, plen, true);
    this.bufLen = off + rlen;
    this.nextSequence();
    return start;
  }

  appendCheckpoint(checkpointId: U64Like): number {
    return this.append(PerCoreWalEntry.checkpoint(this.core, 0, 0, checkpointId, 0));
  }

  /** An EpochBarrier at the writer's current epoch. */
  appendEpochBarrier(): number {
    return this.append(PerCoreWalEntry.epochBarrier(this.core, this.epoch(), 0, 0));
  }

  /** Records source offsets (e.g. Kafka partition offsets) and an optional watermark. */
  appendCommit(offsets: ReadonlyMap<string, U64Like> | Record<string, U64Like>, watermark: U64Like | null = null): number {
    const op = commitOperation(offsets, watermark);
    return this.append(new PerCoreWalEntry(this.core, 0, 0, 0, 0, 0, 0, op));
  }

  private stamp(entry: PerCoreWalEntry): PerCoreWalEntry {
    if (!(entry instanceof PerCoreWalEntry)) throw new PerCoreWalError('INVALID_ARGUMENT', 'append takes a PerCoreWalEntry');
    if (entry.eHi > this.eHi || (entry.eHi === this.eHi && entry.eLo > this.eLo)) { this.eHi = entry.eHi; this.eLo = entry.eLo; }
    return entry;
  }

  /** The entry as it will be written: this writer's core, epoch, sequence and a fresh timestamp. */
  private restamp(entry: PerCoreWalEntry): PerCoreWalEntry {
    this.tick();
    return new PerCoreWalEntry(this.core, this.eHi, this.eLo, this.sHi, this.sLo, this.tHi, this.tLo, entry.operation);
  }

  /** A record larger than the buffer: flushed buffer, then one write of its own. */
  private appendLarge(entry: PerCoreWalEntry): number {
    assert(this.bufLen === 0, 'buffer flushed before a large record');
    const e = this.restamp(entry);
    const plen = payloadSize(e);
    const rec = Buffer.allocUnsafe(RECORD_HEADER_SIZE + plen);
    const dv = new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    encodePayload(e, rec, dv, RECORD_HEADER_SIZE, this.synced);
    frameAt(rec, dv, 0, plen);
    const start = this.bufStart;
    if (this.sio !== null) {
      this.preallocateVia(this.sio, this.sioFd, start + rec.length);
      this.submitTracked(this.sio, this.sioFd, rec, start);
    } else {
      this.writeAt(rec, 0, rec.length, start);
      this.bufStart += rec.length;
    }
    this.nextSequence();
    return start;
  }

  private tooLarge(plen: number): PerCoreWalError {
    return new PerCoreWalError('RECORD_TOO_LARGE', `record payload of ${plen} bytes exceeds maxRecordSize ${this.maxRecord} (core ${this.core})`,
      { coreId: this.core, path: this.segPath });
  }

  // ---- direct path I/O -------------------------------------------------------------

  /** Writes `buf[off, off+len)` at `at`; poisons on failure. */
  private writeAt(buf: Uint8Array, off: number, len: number, at: number): void {
    // A write of its own now could land before queued StorageIo writes below or over it
    // (preallocation zeros), so the direct path waits until those completed.
    this.requireNoStorageIoInFlight('a direct write');
    try {
      let done = 0;
      while (done < len) done += this.fs.writeSync(this.fd, buf, off + done, len - done, at + done);
    } catch (e) {
      throw this.fail(ioError('write', e, this.segPath, at, this.core));
    }
    // Direct writes are sequential and nothing is in flight: all below the end is written.
    this.written = at + len;
  }

  /**
   * Zero-fills ahead of `end` when the file is about to grow. Done at sync time only: it is
   * there so that the next fdatasyncs need not write metadata for a growing file, which
   * only matters to workloads that sync; a workload that never syncs never pays for zeros.
   */
  private preallocate(end: number): void {
    if (this.preallocStep === 0 || end + (this.preallocStep >> 2) <= this.allocatedEnd) return;
    const target = end + this.preallocStep;
    zeroChunk ??= Buffer.alloc(1 << 20);
    try {
      for (let at = Math.max(this.allocatedEnd, end); at < target; ) {
        const n = Math.min(zeroChunk.length, target - at);
        at += this.fs.writeSync(this.fd, zeroChunk, 0, n, at);
      }
    } catch (e) {
      throw this.fail(ioError('preallocate', e, this.segPath, end, this.core));
    }
    this.allocatedEnd = target;
  }

  private flushBuffer(): void {
    if (this.bufLen === 0) return;
    sealFrames(this.buf, this.dv, 0, this.bufLen);
    this.writeAt(this.buf, 0, this.bufLen, this.bufStart);
    this.bufStart += this.bufLen;
    this.bufLen = 0;
  }

  private fail(err: PerCoreWalError): PerCoreWalError {
    this.poison ??= err;
    return err;
  }

  /** Writes buffered records without syncing them. */
  flush(): void {
    this.checkWritable();
    this.flushBuffer();
  }

  /**
   * Writes buffered records and fdatasyncs; then `syncedPosition() === position()`.
   * A failed fdatasync poisons the writer and is never retried: the kernel may have
   * dropped the dirty pages, so a later successful fsync would prove nothing.
   */
  sync(): void {
    this.checkWritable();
    this.requireNoStorageIoInFlight('sync');
    this.flushBuffer();
    const target = this.bufStart;
    if (target > this.allocatedEnd) this.allocatedEnd = target;
    // A sync that carries a lot of data gains nothing from skipping one metadata write.
    if (target - this.synced < this.preallocStep >> 2) this.preallocate(target);
    try {
      this.fs.fdatasyncSync(this.fd);
    } catch (e) {
      throw this.fail(ioError('fdatasync', e, this.segPath, target, this.core));
    }
    assert(target >= this.synced, 'synced position never moves back');
    this.synced = target;
    this.written = target;
    this.syncCover = target;
    this.sinceSync = 0;
  }

  /**
   * Declares everything appended so far durable, for callers that made it so by other
   * means (their own fdatasync of the segment). Buffered records are written first.
   */
  markSynced(): void {
    this.checkWritable();
    this.requireNoStorageIoInFlight('markSynced');
    this.flushBuffer();
    this.synced = this.bufStart;
    this.written = this.bufStart;
    this.syncCover = this.bufStart;
    this.sinceSync = 0;
  }

  private requireNoStorageIoInFlight(op: string): void {
    if (this.storageIoBusy()) {
      throw new PerCoreWalError('SYNC_IN_FLIGHT', `${op} while StorageIo operations are in flight on core ${this.core}; wait for checkCompletions`,
        { coreId: this.core, path: this.segPath });
    }
  }

  /**
   * Cuts the segment back to `position` (a record boundary at or before `position()`),
   * durably. Sequence, epoch and timestamp keep counting up.
   */
  truncate(position: number): void {
    const pos = toPosition(position, 'position');
    this.checkWritable();
    this.requireNoCompaction('truncate');
    this.requireNoStorageIoInFlight('truncate');
    this.flushBuffer();
    if (pos > this.bufStart) {
      throw new PerCoreWalError('INVALID_POSITION', `cannot truncate core ${this.core} to ${pos}: past its position ${this.bufStart}`,
        { coreId: this.core, path: this.segPath, position: pos });
    }
    if (pos !== 0 && pos !== this.bufStart) this.requireBoundary(pos);
    try {
      this.fs.ftruncateSync(this.fd, pos);
      this.fs.fdatasyncSync(this.fd);
    } catch (e) {
      throw this.fail(ioError('truncate', e, this.segPath, pos, this.core));
    }
    this.bufStart = pos;
    this.allocatedEnd = pos;
    this.written = pos;
    if (this.synced > pos) this.synced = pos;
    if (this.syncCover > pos) this.syncCover = pos;
    this.sinceSync = 0;
  }

  private requireBoundary(pos: number): void {
    const r = PerCoreWalReader.open(this.core, this.segPath, { fs: this.fs, maxRecordSize: this.maxRecord });
    try {
      while (r.position() < pos && r.readNext().kind === 'entry');
      if (r.position() !== pos) {
        throw new PerCoreWalError('INVALID_POSITION', `${pos} is not a record boundary of ${this.segPath}`, { coreId: this.core, path: this.segPath, position: pos });
      }
    } finally {
      r.close();
    }
  }

  /** Empties the segment (after a checkpoint has captured it). */
  reset(): void {
    this.truncate(0);
  }

  /**
   * Drops the segment's bytes below `from` (a record boundary: just past a checkpoint's
   * epoch barrier) and keeps the records after it, which move to the front of the segment
   * — a {@link CoreWalWriter.reset} for a writer that went on appending after the barrier
   * while the checkpoint was written. Everything appended is synced first; the records
   * kept are copied, each frame's CRC checked on the way, into `<segment>.compact`, which
   * is synced and renamed over the segment, and the directory is synced.
   *
   * Crash-safe at every step: until the rename is durable the segment is untouched (the
   * barrier still stands at `from`, so recovery replays from there); after it the segment
   * holds only the records kept (the barrier is gone, so recovery replays from 0) — see
   * `replayStarts`. A failure before the rename leaves the writer as it was; one after it
   * poisons the writer. Positions move down by `from`. Returns the new position.
   *
   * @example
   * ```ts
   * const barrierEnd = writer.appendEpochBarrier() + BARRIER_RECORD_SIZE;
   * writer.sync();
   * // … more appends; a checkpoint holding everything before barrierEnd is made durable …
   * writer.compactFrom(barrierEnd); // the segment now starts with the records after the barrier
   * ```
   */
  compactFrom(from: number): number {
    const c = this.beginCompaction(from);
    c.step(Infinity);
    return c.finish();
  }

  /**
   * {@link CoreWalWriter.compactFrom} in two phases, so that appends go on during the
   * long one. Syncs what was appended, checks `from` as `compactFrom` does and returns
   * the running {@link Compaction}:
   *
   * 1. `await c.copy()` (or `c.step()` slices, then `await c.syncCopy()`) copies the
   *    records in [from, end1) — end1 being the synced end now — CRC-checked, into
   *    `<segment>.compact` and fdatasyncs it off the thread, while this writer goes on
   *    appending and syncing to the segment;
   * 2. `c.finish()`, synchronous and short: syncs, copies the records appended meanwhile,
   *    fdatasyncs, renames over the segment, fsyncs the directory and reopens. Positions
   *    then move down by `from`, exactly as after `compactFrom`.
   *
   * Crash safety is `compactFrom`'s: the segment is untouched until the rename. A failure
   * before it removes the temporary file and leaves the writer as it was (poisoned if its
   * own I/O failed). One compaction at a time: meanwhile `truncate`, `reset` and another
   * compaction fail with `COMPACTION_IN_PROGRESS`; `close` abandons it.
   *
   * @example
   * ```ts
   * const c = writer.beginCompaction(barrierEnd);
   * await c.copy();          // appends and syncs go on meanwhile
   * c.finish();              // the segment now starts with the records after the barrier
   * ```
   */
  beginCompaction(from: number): Compaction {
    const pos = toPosition(from, 'from');
    this.checkWritable();
    this.requireNoCompaction('a compaction');
    this.requireNoStorageIoInFlight('compactFrom');
    this.sync();
    const end = this.bufStart;
    if (pos > end) {
      throw new PerCoreWalError('INVALID_POSITION', `cannot compact core ${this.core} from ${pos}: past its position ${end}`,
        { coreId: this.core, path: this.segPath, position: pos });
    }
    const c = new Compaction(this.compactionHost(), pos, end);
    this.compaction = c;
    return c;
  }

  /** The running compaction, or null. */
  runningCompaction(): Compaction | null { return this.compaction; }

  private requireNoCompaction(op: string): void {
    if (this.compaction !== null) {
      throw new PerCoreWalError('COMPACTION_IN_PROGRESS', `${op} while a compaction of core ${this.core} is running (${this.segPath})`,
        { coreId: this.core, path: this.segPath });
    }
  }

  private compactionHost(): CompactionHost {
    return {
      fs: this.fs,
      core: this.core,
      path: this.segPath,
      maxRecordSize: this.maxRecord,
      fd: () => this.fd,
      checkWritable: () => this.checkWritable(),
      syncAll: () => {
        if (this.position() !== this.synced) this.sync();
        else { this.checkWritable(); this.requireNoStorageIoInFlight('a compaction\'s finish'); }
        return this.synced;
      },
      truncateToZero: () => this.truncate(0),
      install: (tmp, from, end) => this.installCompacted(tmp, from, end),
      release: (c) => { if (this.compaction === c) this.compaction = null; },
    };
  }

  /**
   * `tmp` holds the segment's bytes [from, end), durably, and the segment ends at `end`:
   * renames it over the segment and moves the writer onto it. A failed rename leaves the
   * writer as it was; anything failing after it poisons the writer.
   */
  private installCompacted(tmp: string, from: number, end: number): number {
    assert(this.compaction === null && end === this.bufStart && end === this.synced && this.bufLen === 0,
      'a compaction installs a copy of everything appended, synced');
    try {
      this.fs.renameSync(tmp, this.segPath);
    } catch (e) {
      try { this.fs.unlinkSync(tmp); } catch { /* the rename's error is the one to report */ }
      throw ioError('rename', e, tmp, undefined, this.core);
    }
    // From here the segment's name is the new file's: the old fd writes nowhere that counts.
    let fd: number;
    try {
      this.fs.fsyncDir(dirname(this.segPath));
      fd = this.fs.openSync(this.segPath, 'r+');
    } catch (e) {
      throw this.fail(ioError('compact', e, this.segPath, 0, this.core));
    }
    // The old file is unlinked and nothing of it is needed; freeing its blocks takes ms.
    closeOffThread(this.fs, this.fd);
    this.fd = fd;
    const n = end - from;
    this.bufStart = n;
    this.allocatedEnd = n;
    this.written = n;
    this.synced = n;
    this.syncCover = n;
    this.lastSyncAt = n;
    this.sinceSync = 0;
    return n;
  }

  /** Writes buffered records (without syncing) and closes the file. Idempotent. */
  close(): void {
    if (this.closed) return;
    // Abandoned now, or (its fdatasync running) by itself once that returns and finds the writer closed.
    if (this.compaction !== null) {
      try { this.compaction.abandon(); } catch { /* syncCopy is running */ }
    }
    try {
      if (this.poison === null) this.flushBuffer();
    } finally {
      this.closed = true;
      try { this.fs.closeSync(this.fd); } catch { /* already reported through the write that failed */ }
    }
  }

  // ---- StorageIo path ----------------------------------------------------------
  //
  // Records are encoded into `buf` (empty on this path: buffered direct appends are
  // submitted first) and handed to the backend, which copies them. Every write's token
  // goes into a FIFO in file order; `written` advances over the completed prefix, and
  // `syncedPosition` to min(boundary of the newest completed datasync, written).

  /**
   * Appends a Put through `sio` at this writer's position and returns the record's start.
   * The record is submitted, not yet written: it is durable once `syncViaStorageIo`'s
   * datasync and every write before it have completed (see `checkCompletions`).
   * A backend that refuses the write (`QUEUE_FULL`, `BUFFER_EXHAUSTED`) makes this throw
   * `BACKPRESSURE` with nothing submitted; the writer stays usable.
   *
   * @example
   * ```ts
   * const sio = new ThreadPoolStorageIo();
   * const fd = registerWriterSegment(writer, sio);
   * writer.appendPutViaStorageIo(Buffer.from('k'), Buffer.from('v'), sio, fd);
   * writer.syncViaStorageIo(sio, fd);
   * const done: IoCompletion[] = [];
   * while (writer.isSyncPending()) { await sio.waitForCompletions(); done.length = 0; sio.pollCompletions(done); writer.checkCompletions(done); }
   * ```
   */
  appendPutViaStorageIo(key: Uint8Array, value: Uint8Array, sio: StorageIo, fd: IoFd): number {
    const plen = this.putPayloadLength(key, value);
    const klen = key.length;
    const rlen = RECORD_HEADER_SIZE + plen;
    this.flushBufferVia(sio, fd);
    const rec = this.scratch(rlen);
    const dv = rec === this.buf ? this.dv : new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    this.tick();
    writePayloadHeader(dv, RECORD_HEADER_SIZE, TAG_PUT, this.core, this.eHi, this.eLo, this.sHi, this.sLo, this.tHi, this.tLo, this.synced);
    dv.setUint32(RECORD_HEADER_SIZE + PAYLOAD_HEADER_SIZE, klen, true);
    rec.set(key, PUT_FIXED);
    rec.set(value, PUT_FIXED + klen);
    frameAt(rec, dv, 0, plen);
    return this.submitRecord(rec, rlen, sio, fd);
  }

  /** Appends a Delete through `sio`; see {@link CoreWalWriter.appendPutViaStorageIo}. */
  appendDeleteViaStorageIo(key: Uint8Array, sio: StorageIo, fd: IoFd): number {
    const plen = this.deletePayloadLength(key);
    const rlen = RECORD_HEADER_SIZE + plen;
    this.flushBufferVia(sio, fd);
    const rec = this.scratch(rlen);
    const dv = rec === this.buf ? this.dv : new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    this.tick();
    writePayloadHeader(dv, RECORD_HEADER_SIZE, TAG_DELETE, this.core, this.eHi, this.eLo, this.sHi, this.sLo, this.tHi, this.tLo, this.synced);
    rec.set(key, DELETE_FIXED);
    frameAt(rec, dv, 0, plen);
    return this.submitRecord(rec, rlen, sio, fd);
  }

  /**
   * Submits the records appended with the direct methods (`appendPut`, `append`, …) and
   * still buffered as one write through `sio`, and makes `sio` this writer's backend:
   * from now on a full buffer goes out through it too. This is the cheapest way to
   * append many records on the StorageIo path: encode them into the buffer with the
   * direct methods, then submit them together. Returns the bytes submitted.
   *
   * @example
   * ```ts
   * for (const [k, v] of batch) writer.appendPut(k, v);   // encoded, not yet submitted
   * writer.flushViaStorageIo(sio, fd);                     // one write for all of them
   * writer.syncViaStorageIo(sio, fd);
   * ```
   */
  flushViaStorageIo(sio: StorageIo, fd: IoFd): number {
    this.checkWritable();
    const n = this.bufLen;
    this.flushBufferVia(sio, fd);
    return n;
  }

  /**
   * Returns the writer to the direct path after `*ViaStorageIo` use (e.g. before its
   * backend is closed): buffered records are again written by `flush`/`sync`. Fails with
   * `SYNC_IN_FLIGHT` while StorageIo operations are in flight.
   */
  detachStorageIo(): void {
    this.requireNoStorageIoInFlight('detachStorageIo');
    this.sio = null;
  }

  /** Appends `entry`'s operation through `sio`, stamped as {@link CoreWalWriter.append} does. */
  appendViaStorageIo(entry: PerCoreWalEntry, sio: StorageIo, fd: IoFd): number {
    this.checkWritable();
    const e = this.stamp(entry);
    const plen = payloadSize(e);
    if (plen > this.maxRecord) throw this.tooLarge(plen);
    const rlen = RECORD_HEADER_SIZE + plen;
    this.flushBufferVia(sio, fd);
    const rec = this.scratch(rlen);
    const dv = rec === this.buf ? this.dv : new DataView(rec.buffer, rec.byteOffset, rec.byteLength);
    encodePayload(this.restamp(e), rec, dv, RECORD_HEADER_SIZE, this.synced);
    frameAt(rec, dv, 0, plen);
    return this.submitRecord(rec, rlen, sio, fd);
  }

  /** Room to encode one record: the (empty) append buffer, or a buffer of its own if larger. */
  private scratch(rlen: number): Buffer {
    assert(this.bufLen === 0, 'the append buffer is empty on the StorageIo path');
    return rlen <= this.buf.length ? this.buf : Buffer.allocUnsafe(rlen);
  }

  /** Submits `rec[0, rlen)` at the position, preallocating ahead first. */
  private submitRecord(rec: Buffer, rlen: number, sio: StorageIo, fd: IoFd): number {
    const start = this.bufStart;
    this.preallocateVia(sio, fd, start + rlen);
    let view: Buffer;
    if (rec === this.buf) {
      // Records of one size repeat: reuse the view instead of building one per record.
      view = this.recView !== null && this.recView.length === rlen ? this.recView : (this.recView = rec.subarray(0, rlen));
    } else {
      view = rec;
    }
    this.submitTracked(sio, fd, view, start);
    this.nextSequence();
    return start;
  }

  /** Submits a write of `data` at `start` (the position) and tracks it in the FIFO. */
  private submitTracked(sio: StorageIo, fd: IoFd, data: Uint8Array, start: number, lend = false): void {
    assert(start === this.bufStart, 'StorageIo writes are submitted in file order');
    let token: number;
    try {
      token = lend ? sio.submitWriteOwned!(fd, data, start) : sio.submitWrite(fd, data, start);
    } catch (err) {
      throw this.refused(err, 'a write', start);
    }
    const end = start + data.length;
    this.wTok.push(token);
    this.wEnd.push(end);
    this.wLen.push(data.length);
    this.wDone.push(false);
    this.bufStart = end;
  }

  /** Records appended with the direct methods go out through `sio` too, in order, never as a blocking write. */
  private flushBufferVia(sio: StorageIo, fd: IoFd): void {
    this.sio = sio;
    this.sioFd = fd;
    if (this.bufLen === 0) return;
    const len = this.bufLen;
    this.preallocateVia(sio, fd, this.bufStart + len);
    sealFrames(this.buf, this.dv, 0, len);
    if (len >= LEND_MIN && sio.submitWriteOwned !== undefined) {
      this.submitTracked(sio, fd, this.buf.subarray(0, len), this.bufStart, true);
      this.lentTok.push(this.wTok[this.wTok.length - 1]!);
      this.lentBuf.push(this.buf);
      this.useBuffer(this.spareBufs.pop() ?? Buffer.allocUnsafeSlow(this.buf.length));
    } else {
      this.submitTracked(sio, fd, this.buf.subarray(0, len), this.bufStart);
    }
    this.bufLen = 0;
  }

  private useBuffer(b: Buffer): void {
    this.buf = b;
    this.dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    this.recView = null;
  }

  /** The backend is done with the buffer lent for write `token` (if one was): it becomes a spare. */
  private returnLent(token: number): void {
    const i = this.lentTok.indexOf(token);
    if (i < 0) return;
    const b = this.lentBuf[i]!;
    this.lentTok.splice(i, 1);
    this.lentBuf.splice(i, 1);
    if ((this.spareBufs.length + 1) * b.length <= MAX_SPARE_BYTES) this.spareBufs.push(b);
  }

  /**
   * Zero-fills the segment ahead of `end` through `sio`, ahead of the records that will
   * overwrite it: an fdatasync that does not grow the file skips the metadata write. The
   * backend runs it before every later write on the fd. Every zero-filled byte is written
   * back by a datasync too, so the zeros go in small pieces of about two datasyncs' worth
   * (64 KiB at least, `preallocate / 2` at most) rather than `preallocate` bytes at once,
   * which would make one datasync in many carry megabytes of zeros (a commit-latency
   * outlier). Here, before records, only when they would otherwise grow the file; the
   * regular top-up follows each datasync (`fillAheadVia`).
   */
  private preallocateVia(sio: StorageIo, fd: IoFd, end: number): void {
    if (this.preallocStep === 0 || end <= this.allocatedEnd || this.zeroFillPaused()) return;
    const from = Math.max(this.allocatedEnd, this.bufStart);
    this.submitZerosVia(sio, fd, from, end + 2 * this.preallocPiece());
  }

  /**
   * After a datasync is submitted: tops the zero-filled region up to two pieces ahead when
   * less than one is left. Queued behind the datasync, the zeros are written while it runs
   * (not between a group's records and its datasync) and go out with the next one. A
   * refusal (a full backend) only leaves it to `preallocateVia`.
   */
  private fillAheadVia(sio: StorageIo, fd: IoFd): void {
    const end = this.bufStart;
    if (this.preallocStep === 0 || this.zeroFillPaused()) return;
    const piece = this.preallocPiece();
    if (end + piece <= this.allocatedEnd) return;
    try {
      this.submitZerosVia(sio, fd, Math.max(this.allocatedEnd, end), end + 2 * piece);
    } catch {
      // Nothing was queued for the part refused; the records' own path fills if it must.
    }
  }

  /** Datasyncs that each carry this much data gain less from skipping one metadata write than the zeros cost them: the file just grows. */
  private zeroFillPaused(): boolean { return this.syncSpan >= this.preallocStep >> 4; }

  /** About two datasyncs' worth, in 64 KiB units, at most half of `preallocate`. */
  private preallocPiece(): number {
    return Math.min(Math.max(1, Math.ceil(2 * this.syncSpan / PREALLOC_PIECE_MIN)) * PREALLOC_PIECE_MIN, this.preallocStep >> 1);
  }

  private submitZerosVia(sio: StorageIo, fd: IoFd, from: number, to: number): void {
    try {
      if (sio.submitZeros !== undefined) {
        this.trackZeros(sio.submitZeros(fd, from, to - from), from, to - from);
      } else {
        zeroChunk ??= Buffer.alloc(1 << 20);
        for (let at = from; at < to; ) {
          const n = Math.min(zeroChunk.length, to - at);
          this.trackZeros(sio.submitWrite(fd, zeroChunk.subarray(0, n), at), at, n);
          at += n;
          this.allocatedEnd = at;
        }
      }
    } catch (err) {
      throw this.refused(err, 'preallocation', from);
    }
    this.allocatedEnd = to;
  }

  private trackZeros(token: number, at: number, len: number): void {
    this.zTok.push(token);
    this.zLen.push(len);
    this.zAt.push(at);
  }

  /** A submission the backend refused: nothing of it was queued, so the writer stays usable. */
  private refused(err: unknown, what: string, position?: number): PerCoreWalError {
    const code = (err as { code?: string }).code;
    if (err instanceof PerCoreWalError) return err;
    return new PerCoreWalError(code === 'QUEUE_FULL' || code === 'BUFFER_EXHAUSTED' ? 'BACKPRESSURE' : 'IO',
      `StorageIo refused ${what} for core ${this.core} on ${this.segPath}${position !== undefined ? ` at byte ${position}` : ''}: ${(err as Error).message}`,
      { coreId: this.core, path: this.segPath, position, cause: err });
  }

  /**
   * Submits a datasync covering everything appended so far, starts all submitted
   * operations (`sio.flush()`), and returns the datasync's token. `syncedPosition()` moves
   * to that boundary once the datasync and every earlier write have completed (see
   * `checkCompletions`). One at a time: a second call while one is pending fails with
   * `SYNC_IN_FLIGHT`.
   */
  syncViaStorageIo(sio: StorageIo, fd: IoFd): number {
    this.checkWritable();
    if (this.sTok.length > 0) {
      throw new PerCoreWalError('SYNC_IN_FLIGHT', `a datasync is already pending on core ${this.core} (${this.segPath})`,
        { coreId: this.core, path: this.segPath });
    }
    return this.submitSync(sio, fd);
  }

  /**
   * As {@link CoreWalWriter.syncViaStorageIo}, but while earlier datasyncs are still in
   * flight (a pipeline: the next group's write and datasync overlap the previous one's).
   * `syncedPosition()` still moves to a datasync's boundary only once it, every write
   * below the boundary and every datasync submitted before it have completed well; a
   * failure of any of them poisons the writer. {@link GroupCommitLog} uses it.
   */
  syncViaStorageIoPipelined(sio: StorageIo, fd: IoFd): number {
    this.checkWritable();
    return this.submitSync(sio, fd);
  }

  private submitSync(sio: StorageIo, fd: IoFd): number {
    this.flushBufferVia(sio, fd);
    const boundary = this.bufStart;
    let token: number;
    try {
      token = sio.submitDatasync(fd);
    } catch (err) {
      throw this.refused(err, 'a datasync', boundary);
    }
    this.sTok.push(token);
    this.sBound.push(boundary);
    this.sOk.push(false);
    this.syncSpan = (this.syncSpan + boundary - this.lastSyncAt) / 2;
    this.lastSyncAt = boundary;
    this.fillAheadVia(sio, fd);
    this.sinceSync = 0;
    try {
      sio.flush();
    } catch (err) {
      // Submitted operations that cannot start leave the segment's state unknown.
      throw this.fail(new PerCoreWalError('IO', `StorageIo could not start the datasync for core ${this.core} on ${this.segPath}: ${(err as Error).message}`,
        { coreId: this.core, path: this.segPath, position: boundary, cause: err }));
    }
    return token;
  }

  isSyncPending(): boolean { return this.sTok.length > 0; }

  /**
   * Datasyncs submitted through StorageIo and not yet retired: not completed, or completed
   * while one submitted before them has not.
   */
  syncsInFlight(): number { return this.sTok.length; }

  /** Writes (records and preallocation) submitted through StorageIo and not yet completed. */
  writesInFlight(): number { return this.wTok.length - this.wHead + this.zTok.length; }

  private storageIoBusy(): boolean {
    return this.wHead < this.wTok.length || this.sTok.length > 0 || this.zTok.length > 0;
  }

  /**
   * Feeds completions from `sio.pollCompletions` to the writer; those that are not its own
   * are ignored, so one batch can go to every writer sharing a backend, in any order.
   * Returns true when this batch completed a pending datasync. A failed or short write,
   * or a failed datasync, poisons the writer and throws `IO` with the errno (the rest of
   * the batch is still taken into account first).
   */
  checkCompletions(completions: readonly IoCompletion[]): boolean {
    let syncCompleted = false;
    let failure: PerCoreWalError | null = null;
    const wasPoisoned = this.poison !== null;
    for (let i = 0; i < completions.length; i++) {
      const c = completions[i]!;
      if (this.sTok.length > 0) {
        const k = this.sTok.indexOf(c.token);
        if (k >= 0) {
          syncCompleted = true;
          if (c.result < 0) {
            failure = this.worse(failure, new PerCoreWalError('IO', `datasync failed on ${this.segPath} (core ${this.core}): errno ${-c.result}`,
              { coreId: this.core, path: this.segPath, position: this.sBound[k]!, errno: -c.result }), wasPoisoned);
            this.sTok.splice(k, 1); this.sBound.splice(k, 1); this.sOk.splice(k, 1);
          } else {
            this.sOk[k] = true;
          }
          this.retireSyncs();
          continue;
        }
      }
      const idx = this.findWrite(c.token);
      if (idx >= 0) {
        this.wDone[idx] = true;
        if (this.lentTok.length > 0) this.returnLent(c.token);
        if (c.result !== this.wLen[idx]) failure = this.worse(failure, this.writeFailed(c.result, this.wEnd[idx]! - this.wLen[idx]!, this.wLen[idx]!), wasPoisoned);
        this.advanceWritten();
        continue;
      }
      if (this.zTok.length > 0) {
        const z = this.zTok.indexOf(c.token);
        if (z < 0) continue;
        if (c.result !== this.zLen[z]) failure = this.worse(failure, this.writeFailed(c.result, this.zAt[z]!, this.zLen[z]!), wasPoisoned);
        this.zTok.splice(z, 1); this.zLen.splice(z, 1); this.zAt.splice(z, 1);
      }
    }
    if (failure !== null) throw failure;
    return syncCompleted;
  }

  private writeFailed(result: number, at: number, len: number): PerCoreWalError {
    const what = result < 0 ? `errno ${-result}` : `short write of ${result} of ${len} bytes`;
    return new PerCoreWalError('IO', `write failed on ${this.segPath} (core ${this.core}) at byte ${at}: ${what}`,
      { coreId: this.core, path: this.segPath, position: at, errno: result < 0 ? -result : undefined });
  }

  /**
   * Poisons at once (so no later completion of the batch moves `written`), keeping as the
   * reported failure the one earliest in the file: later ones (e.g. writes a backend
   * cancelled after the failure) are its consequences, whatever order they were polled in.
   */
  private worse(current: PerCoreWalError | null, err: PerCoreWalError, wasPoisoned: boolean): PerCoreWalError {
    const pick = current === null || err.position! < current.position! ? err : current;
    if (!wasPoisoned) this.poison = pick;
    return pick;
  }

  private findWrite(token: number): number {
    // Backends hand out tokens in increasing order, so the FIFO is sorted.
    let lo = this.wHead, hi = this.wTok.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const t = this.wTok[mid]!;
      if (t === token) return this.wDone[mid] ? -1 : mid;
      if (t < token) lo = mid + 1; else hi = mid - 1;
    }
    return -1;
  }

  private advanceWritten(): void {
    // Completed writes leave the FIFO even after a failure (so that nothing stays "in
    // flight" forever), but `written` never passes the failed one.
    while (this.wHead < this.wTok.length && this.wDone[this.wHead]) {
      if (this.poison === null) {
        const end = this.wEnd[this.wHead]!;
        assert(end > this.written, 'completed writes advance in file order');
        this.written = end;
      }
      this.wHead++;
    }
    if (this.wHead === this.wTok.length) {
      this.wHead = 0;
      this.wTok.length = 0; this.wEnd.length = 0; this.wLen.length = 0; this.wDone.length = 0;
    } else if (this.wHead > 1024 && this.wHead * 2 > this.wTok.length) {
      this.wTok.splice(0, this.wHead); this.wEnd.splice(0, this.wHead); this.wLen.splice(0, this.wHead); this.wDone.splice(0, this.wHead);
      this.wHead = 0;
    }
    this.advanceSynced();
  }

  /** Datasyncs that completed well, every one before them having completed too, leave the FIFO and cover their boundary. */
  private retireSyncs(): void {
    let n = 0;
    while (n < this.sTok.length && this.sOk[n]) {
      if (this.sBound[n]! > this.syncCover) this.syncCover = this.sBound[n]!;
      n++;
    }
    if (n === 0) return;
    this.sTok.splice(0, n); this.sBound.splice(0, n); this.sOk.splice(0, n);
    this.advanceSynced();
  }

  /** Invariant 1: never past a write that has not completed, never past the newest completed datasync. */
  private advanceSynced(): void {
    if (this.poison !== null) return;
    const s = this.syncCover < this.written ? this.syncCover : this.written;
    if (s > this.synced) this.synced = s;
  }
}

function requirePath(path: unknown): asserts path is string {
  if (typeof path !== 'string' || path.length === 0) throw new PerCoreWalError('INVALID_ARGUMENT', 'path must be a non-empty string');
}
