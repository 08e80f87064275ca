import { crc32cWithView } from '../crc/crc32c.js';
import {
  decodePayload, FORMAT_VERSION, PAYLOAD_HEADER_SIZE, TAG_CHECKPOINT, TAG_COMMIT, TAG_DELETE, TAG_EPOCH_BARRIER, TAG_PUT,
} from '../entry/codec.js';
import type { PerCoreWalEntry } from '../entry/entry.js';
import { ioError, PerCoreWalError } from '../errors/errors.js';
import type { WalFs } from '../io/fs.js';
import { PerCoreWalReader, resultError, type WalReadResult } from '../reader/reader.js';
import { scanSegment } from '../reader/scan.js';
import { DEFAULT_MAX_RECORD_SIZE, RECORD_HEADER_SIZE } from '../record/framing.js';
import { VerifiedRun } from '../record/verify.js';
import { hi32, joinU64, lo32 } from '../util/u64.js';
import { mapKey } from '../checkpoint/state.js';

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
  /** Check CRCs a run of frames at a time (default); false is the reference the tests compare against. */
  batchVerify?: boolean;
}

const NO_END = Number.MAX_SAFE_INTEGER;
const BLOCK = 1 << 20;
const MIN_RECORD = RECORD_HEADER_SIZE + PAYLOAD_HEADER_SIZE;
const PUT_KEY = PAYLOAD_HEADER_SIZE + 4;
/** Record starts below 2^37 (128 GiB) pack with a 16-bit core id into a safe integer. */
const MAX_REF_START = 2 ** 37;
const EMPTY = new Uint8Array(0);

/**
 * Reads one segment for recovery, one entry ahead, applying the recovery mode to every
 * bad record it meets. A missing segment reads as empty.
 *
 * Two paths. The fast one parses records in place in a block buffer and allocates
 * nothing per record: the merge compares heads by their numeric fields and the consumer
 * copies out only what it keeps (a Put's key as a map key and its value). Anything it
 * does not expect — a bad length, a CRC mismatch, an odd body, the end of the log — hands
 * the rest of the segment to the slow path, a {@link PerCoreWalReader} that classifies
 * the record and applies the mode. Both accept exactly the same records.
 */
export class SegmentCursor {
  readonly coreId: number;
  readonly path: string;
  readonly start: number;
  readonly fileLen: number;
  /** Just past the last entry handed out: where this segment's replay ended. */
  consumed: number;
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

  // Head: the entry to hand out next. Numeric fields for the merge; the payload is at
  // block[hOff, hOff + hLen) on the fast path, or hEntry on the slow one.
  /** @internal */ hEHi = 0; /** @internal */ hELo = 0;
  /** @internal */ hTHi = 0; /** @internal */ hTLo = 0;
  /** @internal */ hSHi = 0; /** @internal */ hSLo = 0;
  /** @internal */ hTag = 0;
  private hOff = -1;
  private hLen = 0;
  private hEntry: PerCoreWalEntry | null = null;
  // The last valid entry read, for the order check and the resume point.
  private hasLast = false;
  private lEHi = 0; private lELo = 0; private lTHi = 0; private lTLo = 0; private lSHi = 0; private lSLo = 0;

  private readonly opts: CursorOptions;
  private readonly maxRecord: number;
  private readonly stopAt: number;
  private readonly limHi: number;
  private readonly limLo: number;
  private readonly limited: boolean;
  private fd = -1;
  private block: Buffer;
  private dv: DataView;
  private blockStart = 0;
  private blockLen = 0;
  private pos: number;
  private headEnd: number;
  private reader: PerCoreWalReader | null = null;
  private budget: number;
  private cutKnown = false;
  private readonly run: VerifiedRun;

  constructor(coreId: number, path: string, opts: CursorOptions) {
    this.coreId = coreId;
    this.path = path;
    this.opts = opts;
    this.maxRecord = opts.maxRecordSize ?? DEFAULT_MAX_RECORD_SIZE;
    this.run = new VerifiedRun(opts.batchVerify ?? true);
    this.start = opts.from;
    this.consumed = opts.from;
    this.headEnd = opts.from;
    this.pos = opts.from;
    this.stopAt = opts.end ?? NO_END;
    const limit = opts.epochLimit;
    this.limited = limit !== undefined && limit !== null;
    this.limHi = this.limited ? hi32(limit!) : 0;
    this.limLo = this.limited ? lo32(limit!) : 0;
    this.block = Buffer.allocUnsafe(0);
    this.dv = new DataView(this.block.buffer);
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
      this.fileLen = 0;
      this.budget = 0;
      return;
    }
    try {
      this.fd = opts.fs.openSync(path, 'r');
      this.fileLen = opts.fs.fstatSync(this.fd).size;
    } catch (e) {
      this.close();
      throw ioError('open', e, path, undefined, coreId);
    }
    if (opts.from > this.fileLen) {
      this.close();
      throw new PerCoreWalError('INVALID_POSITION', `position ${opts.from} is past the end of ${path} (${this.fileLen} bytes)`, { path, position: opts.from, coreId });
    }
    this.block = Buffer.allocUnsafe(BLOCK);
    this.dv = new DataView(this.block.buffer, this.block.byteOffset, this.block.byteLength);
    this.budget = 16 * this.fileLen + (64 << 20);
  }

  /** Bytes read so far (for progress). */
  position(): number { return this.reader === null ? this.pos : this.reader.position(); }

  /** Epoch and sequence of the last valid entry read, or null. */
  lastEpoch(): bigint | null { return this.hasLast ? joinU64(this.lEHi, this.lELo) : null; }
  lastSequence(): bigint | null { return this.hasLast ? joinU64(this.lSHi, this.lSLo) : null; }

  // ---- the head, for the consumer ----------------------------------------------

  /** The head as an entry (decoded on demand on the fast path). */
  headEntry(): PerCoreWalEntry {
    if (this.hEntry === null) this.hEntry = decodePayload(this.block, this.dv, this.hOff, this.hOff + this.hLen, this.path, this.headEnd - this.hLen - RECORD_HEADER_SIZE);
    return this.hEntry;
  }

  headEpoch(): bigint { return joinU64(this.hEHi, this.hELo); }

  /** After {@link SegmentCursor.loadHeadKey}: the head's key is `kBuf[kStart, kEnd)` (valid until the next advance). */
  kBuf: Uint8Array = EMPTY;
  kStart = 0;
  kEnd = 0;

  /** Points `kBuf`/`kStart`/`kEnd` at a Put's or Delete's key, without copying it. */
  loadHeadKey(): void {
    if (this.hOff < 0) {
      const k = this.hEntry!.key()!;
      this.kBuf = k; this.kStart = 0; this.kEnd = k.length;
      return;
    }
    const p = this.hOff;
    this.kBuf = this.block;
    if (this.hTag === TAG_PUT) {
      this.kStart = p + PUT_KEY;
      this.kEnd = this.kStart + this.dv.getUint32(p + PAYLOAD_HEADER_SIZE, true);
    } else {
      this.kStart = p + PAYLOAD_HEADER_SIZE;
      this.kEnd = p + this.hLen;
    }
  }

  /** A Put's or Delete's key as a map key (one latin1 character per byte). */
  headMapKey(): string {
    if (this.hOff < 0) return mapKey(this.hEntry!.key()!);
    const p = this.hOff;
    if (this.hTag === TAG_PUT) return this.block.toString('latin1', p + PUT_KEY, p + PUT_KEY + this.dv.getUint32(p + PAYLOAD_HEADER_SIZE, true));
    return this.block.toString('latin1', p + PAYLOAD_HEADER_SIZE, p + this.hLen);
  }

  /** A Put's value, as a buffer of its own. */
  headValue(): Uint8Array {
    if (this.hOff < 0) return this.hEntry!.value()!;
    const p = this.hOff;
    const from = p + PUT_KEY + this.dv.getUint32(p + PAYLOAD_HEADER_SIZE, true);
    const v = Buffer.allocUnsafe(p + this.hLen - from);
    this.block.copy(v, 0, from, p + this.hLen);
    return v;
  }

  /**
   * A Put's value by reference: where its record starts in this segment, packed with the
   * core id as `start * 65536 + coreId` (see {@link SegmentCursor.putAt}), or -1 when
   * the head is not on the fast path (then copy it with `headValue`). Replay keeps
   * references and copies only the values still live at the end, so a WAL that overwrites
   * keys allocates nothing per overwritten value.
   */
  headValueRef(): number {
    if (this.hOff < 0) return -1;
    const start = this.headEnd - RECORD_HEADER_SIZE - this.hLen;
    return start < MAX_REF_START ? start * 65536 + this.coreId : -1;
  }

  /** Reads back the Put record starting at `start` (a position `headValueRef` gave; its CRC was checked then) into `set`. */
  putAt(start: number, set: (key: string, value: Uint8Array) => void): void {
    let off = this.ensure(start, RECORD_HEADER_SIZE);
    const plen = off < 0 ? -1 : this.dv.getUint32(off, true);
    off = plen < PUT_KEY ? -1 : this.ensure(start, RECORD_HEADER_SIZE + plen);
    if (off < 0 || this.block[off + RECORD_HEADER_SIZE + 1] !== TAG_PUT) {
      throw new PerCoreWalError('IO', `${this.path} changed during recovery: no Put record at byte ${start} any more`, { path: this.path, position: start, coreId: this.coreId });
    }
    const p = off + RECORD_HEADER_SIZE;
    const ks = p + PUT_KEY;
    const from = ks + this.dv.getUint32(p + PAYLOAD_HEADER_SIZE, true);
    const v = Buffer.allocUnsafe(p + plen - from);
    this.block.copy(v, 0, from, p + plen);
    set(this.block.toString('latin1', ks, from), v);
  }

  /** A Put's or Delete's key, as a buffer of its own. */
  headKey(): Uint8Array {
    if (this.hOff < 0) return this.hEntry!.key()!;
    const p = this.hOff;
    const [from, to] = this.hTag === TAG_PUT
      ? [p + PUT_KEY, p + PUT_KEY + this.dv.getUint32(p + PAYLOAD_HEADER_SIZE, true)]
      : [p + PAYLOAD_HEADER_SIZE, p + this.hLen];
    return Buffer.from(this.block.subarray(from, to));
  }

  // ---- reading ------------------------------------------------------------------

  /** Moves past the head: the next entry becomes the head; false when the segment is done. */
  advance(): boolean {
    this.consumed = this.headEnd;
    this.hEntry = null;
    this.hOff = -1;
    if (this.done) return false;
    if (this.fd < 0 && this.reader === null) return this.finish('clean');
    if (this.reader === null) {
      const r = this.fastNext();
      if (r > 0) return true;
      if (r < 0) return false;
      this.reader = PerCoreWalReader.openFrom(this.coreId, this.path, this.pos, { fs: this.opts.fs, maxRecordSize: this.opts.maxRecordSize });
    }
    return this.slowNext(this.reader);
  }

  /** Makes file bytes [at, at + n) addressable in the block; returns their offset in it. */
  private ensure(at: number, n: number): number {
    if (at >= this.blockStart && at + n <= this.blockStart + this.blockLen) return at - this.blockStart;
    // The block's bytes change: nothing in it is verified any more.
    this.run.clear();
    if (n > this.block.length) {
      this.block = Buffer.allocUnsafe(n);
      this.dv = new DataView(this.block.buffer, this.block.byteOffset, this.block.byteLength);
    }
    const want = Math.min(this.block.length, this.fileLen - at);
    let got = 0;
    while (got < want) {
      let r: number;
      try {
        r = this.opts.fs.readSync(this.fd, this.block, got, want - got, at + got);
      } catch (e) {
        this.blockLen = 0;
        throw ioError('read', e, this.path, at + got, this.coreId);
      }
      if (r === 0) break;
      got += r;
    }
    this.blockStart = at;
    this.blockLen = got;
    return got >= n ? 0 : -1;
  }

  /**
   * The fast path: 1 when a valid record became the head, -1 when the segment ended at a
   * limit or its end, 0 to let the slow path look at `this.pos`.
   */
  private fastNext(): number {
    const pos = this.pos;
    if (pos >= this.stopAt) { this.finish('limit'); return -1; }
    const rem = this.fileLen - pos;
    if (rem === 0) { this.finish('clean'); return -1; }
    if (rem < MIN_RECORD) return 0;
    let off = this.ensure(pos, RECORD_HEADER_SIZE);
    if (off < 0) return 0;
    const plen = this.dv.getUint32(off, true);
    if (plen < PAYLOAD_HEADER_SIZE || plen > this.maxRecord || plen > rem - RECORD_HEADER_SIZE) return 0;
    off = this.ensure(pos, RECORD_HEADER_SIZE + plen);
    if (off < 0) return 0;
    const b = this.block, dv = this.dv;
    const p = off + RECORD_HEADER_SIZE;
    const tag = b[p + 1]!;
    if (b[p] !== FORMAT_VERSION || tag < TAG_PUT || tag > TAG_EPOCH_BARRIER || dv.getUint16(p + 2, true) !== this.coreId) return 0;
    if (dv.getUint32(p + 32, true) >= 0x200000) return 0; // synced boundary beyond 2^53: let the reader say so
    if (!this.run.checked(this.block, this.dv, this.blockLen, off, p + plen, this.maxRecord)) return 0;
    const body = plen - PAYLOAD_HEADER_SIZE;
    let entry: PerCoreWalEntry | null = null;
    if (tag === TAG_PUT) {
      if (body < 4 || dv.getUint32(p + PAYLOAD_HEADER_SIZE, true) > body - 4) return 0;
    } else if (tag === TAG_CHECKPOINT || tag === TAG_EPOCH_BARRIER) {
      if (body !== 8) return 0;
    } else if (tag === TAG_COMMIT) {
      try {
        entry = decodePayload(b, dv, p, p + plen, this.path, pos);
      } catch {
        return 0;
      }
    } else if (tag !== TAG_DELETE) {
      return 0;
    }
    const eLo = dv.getUint32(p + 4, true), eHi = dv.getUint32(p + 8, true);
    const sLo = dv.getUint32(p + 12, true), sHi = dv.getUint32(p + 16, true);
    const tLo = dv.getUint32(p + 20, true), tHi = dv.getUint32(p + 24, true);
    if (this.hasLast && !this.after(eHi, eLo, tHi, tLo, sHi, sLo)) return 0;
    if (this.limited && (eHi > this.limHi || (eHi === this.limHi && eLo >= this.limLo))) { this.finish('limit'); return -1; }
    this.hEHi = eHi; this.hELo = eLo; this.hTHi = tHi; this.hTLo = tLo; this.hSHi = sHi; this.hSLo = sLo;
    this.hTag = tag;
    this.hOff = p;
    this.hLen = plen;
    this.hEntry = entry;
    this.setLast();
    this.entries++;
    this.pos = pos + RECORD_HEADER_SIZE + plen;
    this.headEnd = this.pos;
    this.run.passed(off, p + plen);
    return 1;
  }


  /** True when (epoch, timestamp, sequence) orders after the last entry read. */
  private after(eHi: number, eLo: number, tHi: number, tLo: number, sHi: number, sLo: number): boolean {
    const d = eHi - this.lEHi || eLo - this.lELo || tHi - this.lTHi || tLo - this.lTLo || sHi - this.lSHi || sLo - this.lSLo;
    return d > 0;
  }

  private setLast(): void {
    this.hasLast = true;
    this.lEHi = this.hEHi; this.lELo = this.hELo; this.lTHi = this.hTHi; this.lTLo = this.hTLo; this.lSHi = this.hSHi; this.lSLo = this.hSLo;
  }

  private slowNext(reader: PerCoreWalReader): boolean {
    for (;;) {
      const at = reader.position();
      if (at >= this.stopAt) return this.finish('limit');
      const r = reader.readNext();
      if (r.kind === 'entry') {
        const e = r.entry;
        if (this.hasLast && !this.after(e.eHi, e.eLo, e.tHi, e.tLo, e.sHi, e.sLo)) {
          const bad: WalReadResult = {
            kind: 'corrupted', position: at,
            reason: `entry does not order after the one before it (epoch ${joinU64(this.lEHi, this.lELo)} → ${e.epoch}, sequence ${joinU64(this.lSHi, this.lSLo)} → ${e.sequence})`,
          };
          if (this.onBad(reader, bad, at, true)) continue;
          return false;
        }
        if (this.limited && (e.eHi > this.limHi || (e.eHi === this.limHi && e.eLo >= this.limLo))) {
          reader.seek(at);
          return this.finish('limit');
        }
        this.hEHi = e.eHi; this.hELo = e.eLo; this.hTHi = e.tHi; this.hTLo = e.tLo; this.hSHi = e.sHi; this.hSLo = e.sLo;
        this.hTag = tagOf(e);
        this.hEntry = e;
        this.setLast();
        this.entries++;
        this.headEnd = reader.position();
        return true;
      }
      if (r.kind === 'eof') return this.finish(this.end === 'skipped' ? 'skipped' : 'clean');
      if (this.onBad(reader, r, at, false)) continue;
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
    this.done = true;
    return false;
  }

  /** Applies the mode to a bad record at `at`: true to keep reading (resynchronised), false when the segment ends. */
  private onBad(reader: PerCoreWalReader, r: Exclude<WalReadResult, { kind: 'entry' } | { kind: 'eof' }>, at: number, outOfOrder: boolean): boolean {
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
          if (next.kind === 'entry' && (!this.hasLast || this.after(next.entry.eHi, next.entry.eLo, next.entry.tHi, next.entry.tLo, next.entry.sHi, next.entry.sLo))) {
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

  close(): void {
    this.reader?.close();
    this.reader = null;
    if (this.fd >= 0) {
      try { this.opts.fs.closeSync(this.fd); } catch { /* read-only descriptor */ }
      this.fd = -1;
    }
  }
}

function tagOf(e: PerCoreWalEntry): number {
  switch (e.operation.type) {
    case 'put': return TAG_PUT;
    case 'delete': return TAG_DELETE;
    case 'checkpoint': return TAG_CHECKPOINT;
    case 'commit': return TAG_COMMIT;
    case 'epochBarrier': return TAG_EPOCH_BARRIER;
  }
}

/** Global order of two heads: (epoch, timestamp, core, sequence), as {@link PerCoreWalEntry.compare}. */
export function compareHeads(a: SegmentCursor, b: SegmentCursor): number {
  return a.hEHi - b.hEHi || a.hELo - b.hELo || a.hTHi - b.hTHi || a.hTLo - b.hTLo ||
    a.coreId - b.coreId || a.hSHi - b.hSHi || a.hSLo - b.hSLo;
}

function describe(r: Exclude<WalReadResult, { kind: 'entry' } | { kind: 'eof' }>): string {
  switch (r.kind) {
    case 'checksumMismatch': return `checksum mismatch: stored 0x${r.expected.toString(16)}, computed 0x${r.actual.toString(16)}`;
    default: return r.reason;
  }
}
