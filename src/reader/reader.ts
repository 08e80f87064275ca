import { crc32cWithView } from '../crc/crc32c.js';
import { decodePayload, FORMAT_VERSION, PAYLOAD_HEADER_SIZE } from '../entry/codec.js';
import type { PerCoreWalEntry, U64Like } from '../entry/entry.js';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import { realFs, type WalFs } from '../io/fs.js';
import { DEFAULT_MAX_RECORD_SIZE, isAllZero, RECORD_HEADER_SIZE } from '../record/framing.js';
import { VerifiedRun } from '../record/verify.js';
import { hi32, lo32, toCoreId, toPosition, toU64 } from '../util/u64.js';

/** What {@link PerCoreWalReader.readNext} found at the reader's position. */
export type WalReadResult =
  | { kind: 'entry'; entry: PerCoreWalEntry }
  | { kind: 'eof' }
  | { kind: 'tornWrite'; position: number; reason: string }
  | { kind: 'checksumMismatch'; position: number; expected: number; actual: number }
  | { kind: 'corrupted'; position: number; reason: string };

export interface PerCoreWalReaderOptions {
  /** Largest payload accepted; a longer length field is corruption. Default 256 MiB. */
  maxRecordSize?: number;
  /** Read block size; at least 1 MiB by default so that a record costs no syscall. */
  blockSize?: number;
  /** File layer; defaults to Node's fs. */
  fs?: WalFs;
  /**
   * @internal Check records' CRCs a run at a time ({@link verifyFrames}) rather than one by
   * one. Default true; false is the reference the tests compare against.
   */
  batchVerify?: boolean;
}

const EOF_RESULT: WalReadResult = Object.freeze({ kind: 'eof' }) as WalReadResult;
const DEFAULT_BLOCK = 1024 * 1024;
/**
 * Reads one core's segment front to back in large blocks, checking every record's
 * length and CRC before decoding it. A bad record is reported, never skipped: the
 * reader stays at its position, so `position()` after a non-entry result is where
 * the valid log ends.
 *
 * @example
 * ```ts
 * const reader = PerCoreWalReader.open(0, '/data/wal/wal-0.log');
 * for (const entry of reader) console.log(entry.sequence, entry.operation.type);
 * reader.close();
 * ```
 */
export class PerCoreWalReader implements Iterable<PerCoreWalEntry> {
  private readonly fs: WalFs;
  private readonly segPath: string;
  private readonly core: number;
  private readonly maxRecord: number;
  private fd: number;
  private len: number;
  private pos: number;
  private readonly blockSize: number;
  private block: Buffer;
  private dv: DataView;
  private blockStart = 0;
  private blockLen = 0;
  /** An entry handed out refers to `block`: the next read goes to a fresh block. */
  private shared = false;
  /** What {@link PerCoreWalReader.readEntry} found when it returned null. */
  private stopped: WalReadResult = EOF_RESULT;
  private resyncCost = 0;
  private readonly run: VerifiedRun;

  private constructor(coreId: number, path: string, position: number, options: PerCoreWalReaderOptions) {
    this.core = toCoreId(coreId);
    if (typeof path !== 'string' || path.length === 0) throw new PerCoreWalError('INVALID_ARGUMENT', 'path must be a non-empty string');
    this.segPath = path;
    this.fs = options.fs ?? realFs;
    this.maxRecord = options.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE;
    this.run = new VerifiedRun(options.batchVerify ?? true);
    const blockSize = options.blockSize ?? DEFAULT_BLOCK;
    try {
      this.fd = this.fs.openSync(path, 'r');
    } catch (e) {
      if ((e as { code?: string }).code === 'ENOENT') {
        throw new PerCoreWalError('SEGMENT_NOT_FOUND', `segment ${path} of core ${coreId} does not exist`, { path, coreId, cause: e });
      }
      throw ioError('open', e, path, undefined, coreId);
    }
    try {
      this.len = this.fs.fstatSync(this.fd).size;
    } catch (e) {
      try { this.fs.closeSync(this.fd); } catch { /* the fstat error is the one to report */ }
      throw ioError('fstat', e, path, undefined, coreId);
    }
    if (position > this.len) {
      try { this.fs.closeSync(this.fd); } catch { /* the bad position is the error to report */ }
      throw new PerCoreWalError('INVALID_POSITION', `position ${position} is past the end of ${path} (${this.len} bytes)`, { path, position });
    }
    this.pos = position;
    this.blockSize = blockSize;
    this.block = Buffer.allocUnsafe(blockSize);
    this.dv = new DataView(this.block.buffer, this.block.byteOffset, this.block.byteLength);
  }

  /** Opens `path` at its start. */
  static open(coreId: number, path: string, options: PerCoreWalReaderOptions = {}): PerCoreWalReader {
    return new PerCoreWalReader(coreId, path, 0, options);
  }

  /** Opens `path` at `position`, which must be a record boundary (e.g. a checkpoint's WAL position). */
  static openFrom(coreId: number, path: string, position: number, options: PerCoreWalReaderOptions = {}): PerCoreWalReader {
    return new PerCoreWalReader(coreId, path, toPosition(position, 'position'), options);
  }

  coreId(): number { return this.core; }
  path(): string { return this.segPath; }
  /** Byte position of the next record; after a non-entry result, where the valid log ends. */
  position(): number { return this.pos; }
  /** File length when the reader opened. */
  fileLen(): number { return this.len; }

  /**
   * Makes bytes [at, at + n) addressable in `this.block` and returns their offset in it,
   * or -1 if the file ends first. `n` has been checked against the file and the maximum.
   * A block that entries refer to is never read into again: a fresh one takes its place.
   */
  private load(at: number, n: number): number {
    if (at + n > this.len) return -1;
    if (at >= this.blockStart && at + n <= this.blockStart + this.blockLen) return at - this.blockStart;
    // The block's bytes change: nothing in it is verified any more.
    this.run.clear();
    if (this.shared || n > this.block.length) {
      this.block = Buffer.allocUnsafe(Math.max(this.blockSize, n));
      this.dv = new DataView(this.block.buffer, this.block.byteOffset, this.block.byteLength);
      this.shared = false;
    }
    const want = Math.min(this.block.length, this.len - at);
    let got = 0;
    while (got < want) {
      let r: number;
      try {
        r = this.fs.readSync(this.fd, this.block, got, want - got, at + got);
      } catch (e) {
        this.blockLen = 0;
        throw ioError('read', e, this.segPath, at + got, this.core);
      }
      if (r === 0) break;
      got += r;
    }
    this.blockStart = at;
    this.blockLen = got;
    return got >= n ? 0 : -1;
  }

  /** True when every byte from `from` to the end of the file is zero. */
  private zerosToEnd(from: number): boolean {
    for (let at = from; at < this.len; ) {
      const n = Math.min(this.block.length, this.len - at);
      const off = this.load(at, n);
      if (off < 0) return false;
      if (!isAllZero(this.block, off, off + n)) return false;
      at += n;
    }
    return true;
  }

  /** Reads the record at the current position. Never throws for bad data; only for I/O errors or a closed reader. */
  readNext(): WalReadResult {
    const entry = this.readEntry();
    return entry !== null ? { kind: 'entry', entry } : this.stopped;
  }

  /**
   * @internal {@link PerCoreWalReader.readNext} without the result object: the entry, or
   * null when there is none, with what was found instead in {@link PerCoreWalReader.stopResult}.
   */
  readEntry(): PerCoreWalEntry | null {
    // Fast path: a whole record already in the block, its CRC good and its payload a valid
    // entry of this core. Anything else — the block's end, a bad record, the end of the
    // log — is left to the full path below, which classifies it.
    const pos = this.pos;
    const off = pos - this.blockStart;
    const avail = this.blockLen - off;
    if (off >= 0 && avail >= RECORD_HEADER_SIZE && this.fd >= 0) {
      const dv = this.dv;
      const plen = dv.getUint32(off, true);
      const start = off + RECORD_HEADER_SIZE;
      const end = start + plen;
      if (plen !== 0 && plen <= avail - RECORD_HEADER_SIZE && plen <= this.maxRecord && this.run.checked(this.block, this.dv, this.blockLen, off, end, this.maxRecord)) {
        let entry: PerCoreWalEntry | null;
        try {
          entry = decodePayload(this.block, dv, start, end, this.segPath, pos, true);
        } catch {
          entry = null;
        }
        if (entry !== null && entry.coreId === this.core) {
          this.shared = true;
          this.pos = pos + RECORD_HEADER_SIZE + plen;
          this.run.passed(off, end);
          return entry;
        }
      }
    }
    return this.readEntryFully();
  }


  /** {@link PerCoreWalReader.readEntry} for any record: loads it, classifies whatever is not an entry. */
  private readEntryFully(): PerCoreWalEntry | null {
    if (this.fd < 0) throw new PerCoreWalError('CLOSED', `reader of ${this.segPath} is closed`, { path: this.segPath });
    const pos = this.pos;
    const remaining = this.len - pos;
    if (remaining <= 0) return this.stop(EOF_RESULT);
    if (remaining < RECORD_HEADER_SIZE) {
      if (this.zerosToEnd(pos)) return this.stop(EOF_RESULT);
      return this.stop({ kind: 'tornWrite', position: pos, reason: `partial record header: ${remaining} of ${RECORD_HEADER_SIZE} bytes` });
    }
    let off = this.load(pos, RECORD_HEADER_SIZE);
    const plen = this.dv.getUint32(off, true);
    if (plen === 0) {
      if (this.zerosToEnd(pos)) return this.stop(EOF_RESULT);
      return this.stop({ kind: 'corrupted', position: pos, reason: 'zero length followed by non-zero bytes' });
    }
    if (plen > this.maxRecord) {
      return this.stop({ kind: 'corrupted', position: pos, reason: `length ${plen} above the maximum record size ${this.maxRecord}` });
    }
    if (plen > remaining - RECORD_HEADER_SIZE) {
      return this.stop({ kind: 'tornWrite', position: pos, reason: `record of ${plen} bytes ends ${plen - remaining + RECORD_HEADER_SIZE} bytes past the end of the file` });
    }
    const expected = this.dv.getUint32(off + 4, true);
    off = this.load(pos, RECORD_HEADER_SIZE + plen);
    const start = off + RECORD_HEADER_SIZE;
    const actual = crc32cWithView(this.dv, this.block, start, start + plen);
    if (actual !== expected) {
      // A bad last record followed only by zeros is a write torn inside preallocated space.
      if (this.zerosToEnd(pos + RECORD_HEADER_SIZE + plen)) {
        return this.stop({ kind: 'tornWrite', position: pos, reason: 'checksum mismatch in the last record (torn write)' });
      }
      return this.stop({ kind: 'checksumMismatch', position: pos, expected, actual });
    }
    let entry: PerCoreWalEntry;
    try {
      // The entry may refer to the block (shared): from now on the block is never read into.
      entry = decodePayload(this.block, this.dv, start, start + plen, this.segPath, pos, true);
    } catch (e) {
      return this.stop({ kind: 'corrupted', position: pos, reason: (e as Error).message });
    }
    if (entry.coreId !== this.core) {
      return this.stop({ kind: 'corrupted', position: pos, reason: `entry of core ${entry.coreId} in the segment of core ${this.core}` });
    }
    this.shared = true;
    this.pos = pos + RECORD_HEADER_SIZE + plen;
    return entry;
  }

  /** @internal What the last {@link PerCoreWalReader.readEntry} that returned null found. */
  stopResult(): WalReadResult { return this.stopped; }

  private stop(r: WalReadResult): null {
    this.stopped = r;
    return null;
  }

  /**
   * Every entry from the position on. A torn tail (the normal result of a crash) ends the
   * list; a checksum mismatch or corruption throws, since entries after it would be lost.
   */
  readAll(): PerCoreWalEntry[] {
    const out: PerCoreWalEntry[] = [];
    for (let e = this.readEntry(); e !== null; e = this.readEntry()) out.push(e);
    return this.endOrThrow(out);
  }

  /** `value` if the last read stopped at the end of the log or a torn tail; else the error. */
  private endOrThrow<T>(value: T): T {
    const r = this.stopped;
    if (r.kind === 'eof' || r.kind === 'tornWrite') return value;
    throw resultError(r, this.segPath, this.core);
  }

  /** Entries with epoch <= `maxEpoch`; stops before the first later one (epochs never decrease within a segment). */
  readUpToEpoch(maxEpoch: U64Like): PerCoreWalEntry[] {
    const max = toU64(maxEpoch, 'maxEpoch');
    const mHi = hi32(max), mLo = lo32(max);
    const out: PerCoreWalEntry[] = [];
    for (;;) {
      const before = this.pos;
      const e = this.readEntry();
      if (e === null) return this.endOrThrow(out);
      if (e.eHi > mHi || (e.eHi === mHi && e.eLo > mLo)) {
        this.pos = before;
        return out;
      }
      out.push(e);
    }
  }

  /** Reads on until the first non-entry result and returns the end of the last valid record. */
  findValidEnd(): number {
    while (this.readEntry() !== null);
    return this.pos;
  }

  /**
   * Looks for the next position after `from` where a valid record starts (checksum and
   * payload both good), for resynchronising past damage. Returns -1 if none. Work is
   * bounded: at most `budgetBytes` of candidate records are checksummed, and nothing else
   * is read per candidate; {@link PerCoreWalReader.lastResyncCost} tells how much was spent.
   */
  resyncFrom(from: number, budgetBytes = 16 * this.len + (64 << 20)): number {
    let budget = budgetBytes;
    this.resyncCost = 0;
    for (let at = toPosition(from, 'from'); at + RECORD_HEADER_SIZE + PAYLOAD_HEADER_SIZE <= this.len; at++) {
      const off = this.load(at, RECORD_HEADER_SIZE + PAYLOAD_HEADER_SIZE);
      const plen = this.dv.getUint32(off, true);
      if (plen < PAYLOAD_HEADER_SIZE || plen > this.maxRecord || plen > this.len - at - RECORD_HEADER_SIZE) continue;
      const p = off + RECORD_HEADER_SIZE;
      if (this.block[p] !== FORMAT_VERSION || this.dv.getUint16(p + 2, true) !== this.core) continue;
      const tag = this.block[p + 1]!;
      if (tag < 1 || tag > 5) continue;
      if (budget < plen) return -1;
      budget -= plen;
      this.resyncCost += plen;
      if (this.validRecordAt(at, plen)) return at;
    }
    return -1;
  }

  /** Bytes of candidate records the last {@link PerCoreWalReader.resyncFrom} checksummed. */
  lastResyncCost(): number { return this.resyncCost; }

  /** True when a record of payload length `plen` at `at` checks and decodes (what readNext would yield). */
  private validRecordAt(at: number, plen: number): boolean {
    const off = this.load(at, RECORD_HEADER_SIZE + plen);
    const start = off + RECORD_HEADER_SIZE;
    if (crc32cWithView(this.dv, this.block, start, start + plen) !== this.dv.getUint32(off + 4, true)) return false;
    try {
      // shared: the entry is dropped at once, so it may refer to the block without copying.
      return decodePayload(this.block, this.dv, start, start + plen, this.segPath, at, true).coreId === this.core;
    } catch {
      return false;
    }
  }

  /** Moves the reader to `position` (a record boundary). */
  seek(position: number): void {
    const p = toPosition(position, 'position');
    if (p > this.len) throw new PerCoreWalError('INVALID_POSITION', `position ${p} is past the end of ${this.segPath}`, { path: this.segPath, position: p });
    this.pos = p;
  }

  close(): void {
    if (this.fd >= 0) {
      const fd = this.fd;
      this.fd = -1;
      // A read-only descriptor's close cannot lose data, and Linux releases the fd even when
      // close reports an error: nothing to report, and a throw here would turn a finished
      // read (or the real error of a `finally`) into a raw Node error.
      try { this.fs.closeSync(fd); } catch { /* see above */ }
    }
  }

  *[Symbol.iterator](): Iterator<PerCoreWalEntry> {
    for (let e = this.readEntry(); e !== null; e = this.readEntry()) yield e;
    const r = this.stopped;
    if (r.kind !== 'eof') throw resultError(r, this.segPath, this.core);
  }
}

/** The typed error for a non-entry read result. */
export function resultError(r: WalReadResult, path: string, coreId: number): PerCoreWalError {
  switch (r.kind) {
    case 'tornWrite':
      return new PerCoreWalError('TORN_WRITE', `torn write in ${path} at byte ${r.position}: ${r.reason}`, { path, position: r.position, coreId });
    case 'checksumMismatch':
      return new PerCoreWalError('CHECKSUM_MISMATCH',
        `checksum mismatch in ${path} at byte ${r.position}: stored 0x${r.expected.toString(16)}, computed 0x${r.actual.toString(16)}`,
        { path, position: r.position, coreId });
    case 'corrupted':
      return new PerCoreWalError('CORRUPTED', `corrupted record in ${path} at byte ${r.position}: ${r.reason}`, { path, position: r.position, coreId });
    default:
      return new PerCoreWalError('ASSERTION', `not an error result: ${r.kind}`);
  }
}
