import { PerCoreWalError } from '../errors/errors.js';
import type { WalFs } from '../io/fs.js';
import { RECORD_HEADER_SIZE } from '../record/framing.js';
import { verifyFrames } from '../record/verify.js';
import { assert } from '../util/assert.js';

/** Where a copy reads, where it writes, and what its errors name. */
export interface FrameCopyTarget {
  fs: WalFs;
  /** The segment, read at its own offsets. */
  src: number;
  /** The new file: byte `from` of the segment goes to its byte 0. */
  out: number;
  from: number;
  maxRecordSize: number;
  core: number;
  /** The segment's path, for error messages. */
  path: string;
}

/**
 * Copies whole frames of a segment, from `from` on, into another file, checking each
 * frame's CRC on the way: what a compaction keeps must be exactly what was appended, and
 * `from` must be a record boundary. Resumable: {@link FrameCopy.copyTo} copies up to an
 * end and can be called again with a later one (the segment grew meanwhile), or stop
 * early when its caller's time slice is over.
 */
export class FrameCopy {
  private readonly t: FrameCopyTarget;
  private block: Buffer;
  private dv: DataView;
  /** Next segment offset to read. */
  private at: number;
  /** Bytes read into `block` but not yet written (the start of a frame not yet whole). */
  private have = 0;
  /** Bytes written to the new file. */
  private wrote = 0;

  /** `blockSize` bounds the work of one step (a frame larger than it gets a block of its own). */
  constructor(target: FrameCopyTarget, blockSize: number) {
    this.t = target;
    this.block = Buffer.allocUnsafe(blockSize);
    this.dv = new DataView(this.block.buffer, this.block.byteOffset, this.block.byteLength);
    this.at = target.from;
  }

  /** Segment offset up to which frames have been copied (a record boundary). */
  copiedEnd(): number { return this.t.from + this.wrote; }

  /**
   * Copies the frames in [copiedEnd(), end), a block at a time. Returns true when they are
   * all copied, false when `more()` said stop first (checked after each block). Throws
   * `INVALID_POSITION` when the bytes are not whole frames with right CRCs, or the I/O
   * error of a read or write.
   */
  copyTo(end: number, more: () => boolean = () => true): boolean {
    const t = this.t;
    assert(end >= this.at, 'a copy never goes back');
    while (t.from + this.wrote < end) {
      const n = this.at < end ? t.fs.readSync(t.src, this.block, this.have, Math.min(this.block.length - this.have, end - this.at), this.at) : 0;
      this.at += n;
      this.have += n;
      const good = verifyFrames(this.block, this.dv, 0, this.have, t.maxRecordSize);
      if (good === 0) {
        const plen = this.have >= RECORD_HEADER_SIZE ? this.dv.getUint32(0, true) : 0;
        if (this.have === this.block.length && plen > 0 && plen <= t.maxRecordSize && RECORD_HEADER_SIZE + plen > this.block.length) {
          // One record larger than the block: room for it, and read on.
          this.grow(RECORD_HEADER_SIZE + plen);
          continue;
        }
        if (n === 0 || this.have === this.block.length) {
          const bad = t.from + this.wrote;
          throw new PerCoreWalError('INVALID_POSITION', `cannot compact ${t.path} from ${t.from}: no whole record with a right CRC at byte ${bad}`,
            { coreId: t.core, path: t.path, position: bad });
        }
        continue;
      }
      for (let w = 0; w < good; ) w += t.fs.writeSync(t.out, this.block, w, good - w, this.wrote + w);
      this.wrote += good;
      this.block.copy(this.block, 0, good, this.have);
      this.have -= good;
      if (t.from + this.wrote < end && !more()) return false;
    }
    assert(this.t.from + this.wrote === end && this.have === 0, 'a copy ends on the end it was given, with nothing left over');
    return true;
  }

  private grow(size: number): void {
    const bigger = Buffer.allocUnsafe(size);
    this.block.copy(bigger, 0, 0, this.have);
    this.block = bigger;
    this.dv = new DataView(bigger.buffer, bigger.byteOffset, bigger.byteLength);
  }
}
